"""Running one claimed job: its kind's work (pipeline.py) under a renewed lease, and its outcome.

Shared by the Celery tasks (tasks.py) and by `aic-admin … --local`, which runs jobs in its
own process: either way a job is claimed in the catalog first, so a job runs once in effect
wherever it runs (DESIGN.md, invariant 3). Outcomes: done; quarantined (PermanentJobError:
the reason is recorded, bad content quarantines its source too); or failed with the
catalog's backoff (anything else; the reaper publishes it again once the backoff passed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.models import Job, JobState
from aic_worker.catalog.sources import quarantine_source
from aic_worker.codec_cache import CodecCache
from aic_worker.config import WorkerConfig
from aic_worker.jobs.errors import LeaseLostError, PermanentJobError
from aic_worker.jobs.heartbeat import LeaseHeartbeat
from aic_worker.jobs.pipeline import RUNNERS, JobContext

log = logging.getLogger(__name__)


def claim(sessions: sessionmaker[Session], job_id: int, owner: str, config: WorkerConfig) -> Job | None:
    """Lease job `job_id` (committed); None when there is nothing to do (see lease.claim)."""
    with sessions() as session, session.begin():
        return lease.claim(session, owner, job_id=job_id, lease=timedelta(seconds=config.lease_seconds))


def _record_failure(ctx: JobContext, job: Job, reason: str, *, retry: bool, bad_input: bool = False) -> None:
    def work(session: Session) -> JobState | None:
        state = lease.fail(session, job.id, ctx.owner, reason, retry=retry)
        if state is JobState.QUARANTINED and bad_input:
            quarantine_source(session, job.source_id, reason)
        return state

    try:
        state = ctx.db(work)
    except Exception:  # the database stayed away: the lease expires and the reaper retries the job
        log.exception("job %s: could not record its failure", job.id)
        return
    log.warning("job %s %s: %s", job.id, state.value if state else "was no longer ours", reason)


def job_context(
    sessions: sessionmaker[Session], codecs: CodecCache, owner: str, config: WorkerConfig,
    heartbeat: LeaseHeartbeat,
) -> JobContext:
    """The context of a job whose lease `heartbeat` renews: patience and quality floor from `config`."""
    return JobContext(sessions, owner, codecs, config.db_retry_seconds, heartbeat.lost, heartbeat.left,
                      config.min_psnr)


def execute(
    sessions: sessionmaker[Session], codecs: CodecCache, job: Job, owner: str, config: WorkerConfig
) -> str:
    """Run claimed `job` (held by `owner`) and record its outcome; returns what happened."""
    length = timedelta(seconds=config.lease_seconds)
    with LeaseHeartbeat(sessions, job.id, owner, length) as heartbeat:
        ctx = job_context(sessions, codecs, owner, config, heartbeat)
        return settle(ctx, job, config, lambda: RUNNERS[job.kind](ctx, job)) or "done"


def settle(ctx: JobContext, job: Job, config: WorkerConfig, work: Callable[[], None]) -> str | None:
    """Run `work` for `job`; None if it returned, else the outcome its error gave the job (recorded).

    One place that maps errors to outcomes, for a job run alone and for a stage of a batch.
    """
    try:
        work()
    except LeaseLostError as error:
        log.warning("job %s: %s; its work was dropped", job.id, error)
        return "lease lost"
    except PermanentJobError as error:
        _record_failure(ctx, job, error.reason, retry=False, bad_input=error.bad_input)
        return "quarantined"
    except SoftTimeLimitExceeded:
        _record_failure(ctx, job, f"time limit of {config.soft_time_limit:.0f}s exceeded", retry=True)
        return "failed"
    except Exception as error:
        log.exception("job %s failed", job.id)
        _record_failure(ctx, job, f"{type(error).__name__}: {error}", retry=True)
        return "failed"
    return None
