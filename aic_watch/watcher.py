"""The watcher: observers and scans feed candidates through the stability window into the catalog.

```
 observer threads ──► Inbox ──┐                       ┌─► examine (sha256, decode)
 (inotify / polling)          ├─► filters ─► Stability ┤
 reconciliation scans ────────┘   (refuse)   Tracker   └─► Enqueuer: commit ─► Outbox ─► broker
 (start-up, timer, overflow, folder's return)             (sources, paths, jobs)      (job ids)
```
Everything after the inbox runs on one loop thread, so the catalog sees one writer per watcher
and no locks are needed. start()/stop() let `aic-admin` embed a watcher in its own process;
`aic-watch` (main.py) runs one until SIGTERM or SIGINT.

Each folder's root is checked every second. A root that vanishes (an unmounted share, a
removed folder) is reported loudly and paused: its observer stops, nothing in the catalog
changes. When it returns, or is replaced by a different directory (a remount), its observer
restarts and a scan finds whatever arrived meanwhile.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from watchdog.observers.api import BaseObserver

from aic_watch.broker import Outbox, Publish, broker_publish
from aic_watch.config import FolderConfig, WatchConfig
from aic_watch.enqueue import Arrival, Enqueuer, examine
from aic_watch.filters import enters_directory, refuse
from aic_watch.metrics import WatcherStatus
from aic_watch.observer import Inbox, Sighting, start_observer, stop_observer
from aic_watch.reconcile import known_unchanged, walk
from aic_watch.stability import Candidate, StabilityTracker, regular_file_stat
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import prepare_catalog
from aic_worker.model_choice import NoModelError

log = logging.getLogger(__name__)

TICK = 0.05  # seconds the loop sleeps when idle: the latency added to the stability window
HEALTH_INTERVAL = 1.0  # seconds between checks that each watched root is still there
BATCH = 100  # files per catalog transaction
SCAN_CHUNK = 250  # paths a scan proposes per catalog query
SCAN_BUDGET = 1000  # paths scanned per loop turn, so events and due files are not starved
CAPACITY = 10_000  # candidates waiting out the window, and paths waiting in the inbox
WARNED_CAPACITY = 10_000  # refused paths remembered so each is warned about once
CATALOG_RETRY = 5.0  # seconds between tries while the catalog can't be reached


@dataclass
class _Folder:
    config: FolderConfig
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the root while it is there


@dataclass
class _Scan:
    folder: _Folder
    paths: Iterator[str]
    whole: bool  # the whole folder, not one new subdirectory
    started: bool = False


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class Watcher:
    """Watches the configured folders and queues every complete image in them exactly once."""

    def __init__(
        self,
        config: WatchConfig,
        *,
        engine: Engine | None = None,
        publish: Publish | None = None,
        capacity: int = CAPACITY,
    ) -> None:
        self.config = config
        self._own_engine = engine is None
        self._engine = engine or create_catalog_engine(config.database_url)
        self._enqueuer = Enqueuer(session_factory(self._engine), config.model_id)
        self._sessions = session_factory(self._engine)
        self._outbox = Outbox(publish or broker_publish)
        self._inbox = Inbox(capacity)
        self._tracker = StabilityTracker(config.stability_window, capacity)
        self._folders = [_Folder(folder) for folder in config.folders]
        self._scans: deque[_Scan] = deque()
        self._warned: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_health = 0.0
        self._next_rescan = 0.0
        self._last_turn = time.monotonic()
        self._catalog_failed = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> WatcherStatus:
        """A snapshot for metrics and health checks; safe from any thread."""
        return WatcherStatus(
            running=self.running,
            last_turn=self._last_turn,
            catalog_available=not self._catalog_failed,
            paused=tuple(str(f.config.path) for f in self._folders if f.identity is None),
            unpublished=len(self._outbox),
            model_id=self._enqueuer.model_id,
        )

    def start(self) -> None:
        """Check the catalog, start the observers, queue the start-up scans, start the loop.

        Raises CatalogVersionError when the catalog's schema is not this code's.
        """
        prepare_catalog(self._engine)
        now = time.monotonic()
        self._check_folders()
        self._next_health = now + HEALTH_INTERVAL
        self._next_rescan = now + self.config.rescan_interval
        self._stopping.clear()
        self._outbox.start()
        self._thread = threading.Thread(target=self._loop, name="aic-watch", daemon=True)
        self._thread.start()
        log.info(
            "watching %s (stability window %gs, rescan every %gs)",
            ", ".join(str(f.config.path) for f in self._folders),
            self.config.stability_window,
            self.config.rescan_interval,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand and stop; files still waiting are found by the next start's scan."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for folder in self._folders:
            self._pause(folder)
        self._outbox.stop()
        if self._own_engine:
            self._engine.dispose()
        log.info("stopped")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._last_turn = time.monotonic()
            try:
                busy = self._step(time.monotonic())
            except SQLAlchemyError as error:
                reason = str(error).splitlines()[0]
                log.error("catalog unavailable, retrying in %gs: %s", CATALOG_RETRY, reason)
                self._catalog_failed = True
                self._stopping.wait(CATALOG_RETRY)
                continue
            except Exception:  # a bug in one turn must not end the watching
                log.exception("watcher loop failed; carrying on in a second")
                self._stopping.wait(1.0)
                continue
            if self._catalog_failed:  # files in hand during the outage were dropped: find them again
                log.info("catalog available again: rescanning")
                self._catalog_failed = False
                for folder in self._folders:
                    self._request_scan(folder)
            if not busy:
                self._stopping.wait(TICK)

    def _step(self, now: float) -> bool:
        """One turn of the loop; True when there is more work at hand right away."""
        if now >= self._next_health:
            self._check_folders()
            self._next_health = now + HEALTH_INTERVAL
        for config in self._inbox.take_overflowed():
            log.warning("more events at once in %s than the inbox holds: rescanning it", config.path)
            self._request_scan(self._folder_of(config))
        if now >= self._next_rescan:
            for folder in self._folders:
                self._request_scan(folder)
            self._next_rescan = now + self.config.rescan_interval
        self._admit_sightings(now)
        self._admit_scans(now)
        candidates = self._tracker.due(now, BATCH)
        if candidates:
            self._take(candidates, now)
        more_due = (self._tracker.next_due() or now + 1) <= time.monotonic()
        return more_due or bool(self._scans and self._tracker.room)

    # Folders: vanishing, returning, remounting.

    def _folder_of(self, config: FolderConfig) -> _Folder:
        return next(f for f in self._folders if f.config is config)

    def _check_folders(self) -> None:
        for folder in self._folders:
            identity = _identity(str(folder.config.path))
            previous, folder.identity = folder.identity, identity
            if identity == previous:
                continue
            if identity is None:
                log.error(
                    "watched folder %s is missing (unmounted or removed): paused, catalog untouched; "
                    "it resumes when the folder is back",
                    folder.config.path,
                )
                self._pause(folder)
                continue
            if previous is not None:
                log.warning("watched folder %s was replaced or remounted: restarting", folder.config.path)
                self._pause(folder)
            elif self._thread is not None:
                log.warning("watched folder %s is back: resuming", folder.config.path)
            self._resume(folder)

    def _pause(self, folder: _Folder) -> None:
        if folder.observer is not None:
            stop_observer(folder.observer)
            folder.observer = None
        self._scans = deque(scan for scan in self._scans if scan.folder is not folder)

    def _resume(self, folder: _Folder) -> None:
        """Observer first, then the scan: a file arriving between the two is seen by one or both."""
        try:
            folder.observer = start_observer(folder.config, self._inbox)
        except OSError as error:
            log.error(
                "cannot watch %s (%s): it is only scanned, every %gs",
                folder.config.path,
                error.strerror or error,
                self.config.rescan_interval,
            )
        self._request_scan(folder)

    # Candidates: from events and scans, through the filters, into the stability tracker.

    def _request_scan(self, folder: _Folder, start: str | None = None) -> None:
        if folder.identity is None:
            return  # paused; its return brings a scan
        if start is None and any(s.folder is folder and s.whole and not s.started for s in self._scans):
            return  # one not yet begun covers this request too
        self._scans.append(_Scan(folder, walk(folder.config, start), whole=start is None))

    def _admissible(self, path: str, folder: FolderConfig) -> bool:
        refusal = refuse(folder, path)
        if refusal is None:
            return True
        if refusal.loud and path not in self._warned:
            if len(self._warned) >= WARNED_CAPACITY:
                self._warned.clear()
            self._warned.add(path)
            log.warning("ignored %s: %s", path, refusal.reason)
        return False

    def _admit_sightings(self, now: float) -> None:
        for sighting in self._inbox.take(self._tracker.room):
            self._admit_sighting(sighting, now)

    def _admit_sighting(self, sighting: Sighting, now: float) -> None:
        if not sighting.is_directory:
            if self._admissible(sighting.path, sighting.folder):
                self._tracker.add(sighting.path, sighting.folder, now)
        elif enters_directory(sighting.folder, sighting.path):
            self._request_scan(self._folder_of(sighting.folder), sighting.path)

    def _admit_scans(self, now: float) -> None:
        budget = SCAN_BUDGET
        while self._scans and budget > 0 and self._tracker.room > 0:
            scan = self._scans[0]
            scan.started = True
            wanted = min(SCAN_CHUNK, budget, self._tracker.room)
            paths = list(islice(scan.paths, wanted))
            budget -= wanted
            if len(paths) < wanted:
                self._scans.popleft()
            config = scan.folder.config
            files = []
            for path in paths:
                if path not in self._tracker and self._admissible(path, config):
                    st = regular_file_stat(path)
                    if st is not None:
                        files.append((path, st))
            with self._sessions() as session:
                known = known_unchanged(session, files)
            for path, _ in files:
                if path not in known:
                    self._tracker.add(path, config, now)

    # Taking: files that held still are hashed, decoded, recorded, queued and published.

    def _take(self, candidates: list[Candidate], now: float) -> None:
        with self._sessions() as session:
            known = known_unchanged(session, [(c.path, c.stat) for c in candidates])
        arrivals: list[Arrival] = []
        for candidate in candidates:
            if candidate.path in known:
                continue
            try:
                arrival = examine(candidate)
            except OSError as error:
                log.error(
                    "cannot read %s: %s; retried at the next scan",
                    candidate.path,
                    error.strerror or error,
                )
                continue
            if arrival is None:  # written to while we read it: its window starts again
                self._tracker.add(candidate.path, candidate.folder, now)
            else:
                arrivals.append(arrival)
        if not arrivals:
            return
        try:
            created = self._enqueuer.record(arrivals)
        except NoModelError as error:
            log.error("%s: %d file(s) wait for the next scan", error, len(arrivals))
            return
        self._outbox.send(created)
