"""Making the catalog, not Redis, decide what runs (DESIGN.md, invariant 1). Torch-free.

Every AIC_REAP_SECONDS each worker's main process, on its event loop's timer (not in a
thread: the prefork pool forks new children from that process at any time, and a fork
taken while another thread holds a lock leaves the child deadlocked):
1. takes back expired leases (lease.reap): their holders died or hung; those jobs are
   published again, whatever the broker still holds for them (a dead worker's unacked
   message comes back only after the visibility timeout);
2. publishes every other claimable job that has no message in the broker: after a
   FLUSHALL, a lost publish, or a failed job whose backoff has passed.
Several workers reaping at once is harmless: reap() skips locked rows, and a duplicate
message finds its job claimed or done and does nothing.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.models import Job
from aic_worker.jobs.queue import publish, queued_job_ids

log = logging.getLogger(__name__)


def reap_and_republish(sessions: sessionmaker[Session], celery_app: Celery) -> list[int]:
    """One round; returns the ids published."""
    with sessions() as session, session.begin():
        reaped = lease.reap(session)
    with sessions() as session:
        claimable = lease.claimable_job_ids(session)
        kinds = dict(session.execute(select(Job.id, Job.kind).where(Job.id.in_(claimable))).all())
    if reaped:
        log.warning("took back expired leases of jobs %s", reaped)
    queued = queued_job_ids(celery_app) if claimable else set()
    wanted = [job_id for job_id in claimable if job_id in reaped or job_id not in queued]
    sent = [job_id for job_id in wanted if publish(job_id, kinds[job_id], celery_app=celery_app)]
    if sent:
        log.info("published %d job(s) that had no message: %s", len(sent), sent[:20])
    return sent


def reap_round(sessions: sessionmaker[Session], celery_app: Celery) -> None:
    """One round that never raises: the database or broker away just means trying next time."""
    try:
        reap_and_republish(sessions, celery_app)
    except Exception as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        log.warning("reaper round failed: %s: %s", type(error).__name__, first_line)
