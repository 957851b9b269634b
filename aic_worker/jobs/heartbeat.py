"""Renewing a job's lease while its work runs, so the reaper leaves a live job alone."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.jobs.errors import is_transient

log = logging.getLogger(__name__)


class LeaseHeartbeat:
    """A thread renewing `job_id`'s lease every third of its length; `lost` is set if it was reaped.

    A renewal that fails because the database is away is only logged: the lease may still
    be ours when the database returns, and the commit checks that anyway.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: int, owner: str, length: timedelta) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.owner = owner
        self.length = length
        self.lost = threading.Event()
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

    def _run(self) -> None:
        while not self._stop.wait(self.length.total_seconds() / 3):
            try:
                with self.sessions() as session, session.begin():
                    held = lease.renew(session, self.job_id, self.owner, lease=self.length)
            except Exception as error:
                if not is_transient(error):
                    log.exception("renewing the lease of job %s failed", self.job_id)
                else:
                    log.warning("lease of job %s not renewed, database away: %s", self.job_id, error)
                continue
            if not held and not self._stop.is_set():
                log.warning("lease of job %s was lost", self.job_id)
                self.lost.set()
                return
