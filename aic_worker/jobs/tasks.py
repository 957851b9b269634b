"""The Celery tasks: claim the job's lease, run its kind's work (pipeline.py), record the outcome.

Start a worker with `aic-worker` (main.py) or
`celery -A aic_worker.jobs.tasks worker -Q aic --concurrency 1`.

Each task takes a job id only. The catalog's lease makes a message idempotent: one whose
job is done, quarantined or held by a live worker claims nothing and does nothing. A
compress task also claims up to AIC_BATCH − 1 other waiting compress jobs of its model and
encodes them together (batch.py); their messages then find nothing to do.
Outcomes (runner.py): done; quarantined (PermanentJobError: the reason is recorded, the
original is left untouched, bad content quarantines its source too); failed with the
catalog's backoff (anything else — the reaper publishes the job again when its backoff has
passed); or, when the database is away at the claim, a Celery retry of the same message
with backoff.

Per process state (engine, codec) is built on first use in the process that runs tasks,
never in the prefork parent: forked children must not share database connections, and
CUDA can't be initialised before a fork.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from celery import Task, bootsteps
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import prepare_catalog
from aic_worker.catalog.models import JobKind
from aic_worker.codec_cache import CodecCache
from aic_worker.config import WorkerConfig
from aic_worker.jobs.batch import execute_batched
from aic_worker.jobs.errors import backoff_delay, is_transient
from aic_worker.jobs.queue import TASK_NAMES, app
from aic_worker.jobs.reaper import reap_round
from aic_worker.jobs.runner import claim
from aic_worker.observe.monitoring import install as install_monitoring

log = logging.getLogger(__name__)
CONFIG = WorkerConfig.from_env()
CLAIM_RETRY_CAP = 60.0

__all__ = ["app", "compress", "recompress", "restore", "verify"]


@dataclass
class Runtime:
    """One per process that runs tasks."""

    pid: int
    sessions: sessionmaker[Session]
    codecs: CodecCache


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        if threads := os.environ.get("AIC_TORCH_THREADS"):
            import torch

            torch.set_num_threads(int(threads))
        engine = create_catalog_engine(connect_timeout=10)  # the database may be away: give up after a while
        _runtime = Runtime(os.getpid(), session_factory(engine), CodecCache(CONFIG.device))
    return _runtime


def run_job(task: Task, job_id: int, kind: JobKind) -> str:
    """Claim job `job_id` and run it (runner.py); returns what happened, for the worker's log."""
    rt = runtime()
    owner = lease.new_owner()
    try:
        job = claim(rt.sessions, job_id, owner, CONFIG)
    except Exception as error:
        if not is_transient(error):
            raise
        delay = backoff_delay(task.request.retries, first=1.0, cap=CLAIM_RETRY_CAP)
        log.warning("job %s: database away at claim (%s); retrying in %.0fs", job_id, error, delay)
        raise task.retry(exc=error, countdown=delay, max_retries=None) from error
    if job is None:
        return "nothing to do"  # done, quarantined, held by a live worker, or backing off
    if job.kind is not kind:
        log.warning("job %s is a %s job, sent as %s: running it as the catalog says", job_id, job.kind, kind)
    return execute_batched(rt.sessions, rt.codecs, job, owner, CONFIG)


@app.task(name=TASK_NAMES[JobKind.COMPRESS], bind=True)
def compress(self: Task, job_id: int) -> str:
    return run_job(self, job_id, JobKind.COMPRESS)


@app.task(name=TASK_NAMES[JobKind.RECOMPRESS], bind=True)
def recompress(self: Task, job_id: int) -> str:
    return run_job(self, job_id, JobKind.RECOMPRESS)


@app.task(name=TASK_NAMES[JobKind.RESTORE], bind=True)
def restore(self: Task, job_id: int) -> str:
    return run_job(self, job_id, JobKind.RESTORE)


@app.task(name=TASK_NAMES[JobKind.VERIFY], bind=True)
def verify(self: Task, job_id: int) -> str:
    return run_job(self, job_id, JobKind.VERIFY)


class ReaperStep(bootsteps.StartStopStep):
    """Runs reaper rounds on the worker's event-loop timer, after checking the catalog's schema."""

    requires = ("celery.worker.components:Timer", "celery.worker.components:Pool")

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.engine: Engine | None = None
        self.entry: Any = None

    def start(self, parent: Any) -> None:
        # NullPool: no idle connection for the pool's later forks to inherit; a short connect
        # timeout: a round runs on the event loop, which must not stall long on a dead database.
        self.engine = create_catalog_engine(connect_timeout=3, poolclass=NullPool)
        prepare_catalog(self.engine)
        sessions = session_factory(self.engine)
        parent.timer.call_after(0.0, reap_round, (sessions, app))
        self.entry = parent.timer.call_repeatedly(CONFIG.reap_seconds, reap_round, (sessions, app))

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
        if self.engine is not None:
            self.engine.dispose()


app.steps["worker"].add(ReaperStep)
install_monitoring(app)
