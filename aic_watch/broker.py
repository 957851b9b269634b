"""Wake-up calls to the workers: job ids, sent after the catalog commit that created the jobs.

The catalog is the source of truth (DESIGN.md, invariant 1): a job whose message is lost is
still pending there, and the workers' reaper republishes pending jobs. The outbox sends from
a thread of its own, because a broker that is down can take seconds to refuse each message
and the watcher must not stop watching meanwhile. The ids it could not send it keeps, in
order, and retries with backoff, so work flows again as soon as the broker is back. That
backlog is bounded; what falls off it, or is left at stop(), is the reaper's.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Publish = Callable[[int], bool]

RETRY_FIRST = 1.0
RETRY_MAX = 60.0
BACKLOG_CAPACITY = 100_000


def broker_publish(job_id: int) -> bool:
    """Send through the worker's queue module (imported late: the broker client loads only here)."""
    from aic_worker.jobs.queue import publish

    return publish(job_id)


class Outbox:
    """Publishes job ids in order on its own thread; keeps and retries those the broker refused."""

    def __init__(self, publish: Publish, capacity: int = BACKLOG_CAPACITY) -> None:
        self._publish = publish
        self._ids: deque[int] = deque(maxlen=capacity)
        self._changed = threading.Condition()
        self._stopping = False
        self._full = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="aic-watch-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sending; a publish still in flight (a slow broker) is not waited for long."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._ids:
            log.warning("%d jobs not published; the workers' reaper will send them", len(self._ids))

    def __len__(self) -> int:
        """Job ids not yet published."""
        with self._changed:
            return len(self._ids)

    def send(self, job_ids: Iterable[int]) -> None:
        """Queue ids of committed jobs for publishing; returns at once."""
        with self._changed:
            for job_id in job_ids:
                if len(self._ids) == self._ids.maxlen and not self._full:
                    log.warning("backlog of unsent jobs full: the oldest are left to the workers' reaper")
                self._full = len(self._ids) == self._ids.maxlen
                self._ids.append(job_id)
            self._changed.notify()

    def _try(self, job_id: int) -> bool:
        try:
            return bool(self._publish(job_id))
        except Exception as error:  # a broken broker client must not end the outbox
            log.error("publishing job %d failed: %s", job_id, error)
            return False

    def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            with self._changed:
                while not self._ids and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                job_id = self._ids[0]
            if self._try(job_id):
                with self._changed:
                    if self._ids and self._ids[0] == job_id:
                        self._ids.popleft()
                if delay > RETRY_FIRST:
                    log.info("broker reachable again: sending the jobs that waited")
                    delay = RETRY_FIRST
                continue
            if delay == RETRY_FIRST:
                log.warning("broker unreachable: jobs wait in the catalog; retrying")
            with self._changed:
                if not self._stopping:
                    self._changed.wait(delay)
            delay = min(delay * 2, RETRY_MAX)
