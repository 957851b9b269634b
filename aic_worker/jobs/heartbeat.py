"""Renewing a job's lease while its work runs, so the reaper leaves a live job alone.

A lease is proven held until `length` after the moment the last accepted renewal was sent:
the catalog set its expiry to the database's now() + length, and that now() is no earlier
than the sending (lease.py: time is the database's, never this host's). When that moment
passes without a renewal — the database away — the work can no longer prove it holds the
job: `lost` is set and the work stops at its next check (pipeline.JobContext.check_lease),
and its commit waits for the database only as long as the lease is proven held
(JobContext.db). A stopped job stays running in the catalog until its lease expires; the
reaper then hands it out again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.jobs.errors import backoff_delay, is_transient

log = logging.getLogger(__name__)
# Of the proven lease, the part not relied upon: clocks tick at slightly different rates, and
# the reaper of another host may act the moment the lease expires.
MARGIN = 0.1


class LeaseHeartbeat:
    """A thread renewing `job_id`'s lease at once, then every third of its length.

    `lost` is set when the lease was reaped, or when it could not be renewed before it may
    have expired; left() says how many seconds it is still proven held.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: int, owner: str, length: timedelta) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.owner = owner
        self.length = length
        self.lost = threading.Event()
        # Until the first renewal: from now, a moment after the claim (its first renewal is at once).
        self._held_until = time.monotonic() + length.total_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def left(self) -> float:
        """Seconds for which the lease is still proven held (0 or less: it may be gone)."""
        if self.lost.is_set():
            return 0.0
        return self._held_until - MARGIN * self.length.total_seconds() - time.monotonic()

    def _renew(self) -> bool | None:
        """Renew once: True held, False reaped, None the database did not answer."""
        sent = time.monotonic()
        try:
            with self.sessions() as session, session.begin():
                held = lease.renew(session, self.job_id, self.owner, lease=self.length)
        except Exception as error:
            if not is_transient(error):
                log.exception("renewing the lease of job %s failed", self.job_id)
            else:
                log.warning("lease of job %s not renewed, database away: %s", self.job_id, error)
            return None
        if held:
            self._held_until = sent + self.length.total_seconds()
        return held

    def _run(self) -> None:
        interval = self.length.total_seconds() / 3
        wait, failures = 0.0, 0
        while not self._stop.wait(wait):
            held = self._renew()
            if held is False and not self._stop.is_set():
                log.warning("lease of job %s was lost", self.job_id)
                self.lost.set()
                return
            if held:
                wait, failures = interval, 0
                continue
            if self.left() <= 0:
                log.warning("lease of job %s could not be renewed in time: its work stops", self.job_id)
                self.lost.set()
                return
            wait = min(backoff_delay(failures), interval, self.left())
            failures += 1
