"""Running a batch of catalog jobs for `aic-admin recompress` and `verify`.

```
 jobs committed ─┬─ workers answer a ping ──► publish ids ─► wait, polling the catalog
                 └─ --local, or no worker ──► claim each here ─► runner.execute
                                 both: a progress bar with ETA ─► each job's final state
```
Either way each job is claimed under a lease before it runs, exactly as a worker claims it,
so a job runs once in effect wherever it runs (DESIGN.md, invariant 3). A job that fails
counts as failed here; the workers' reaper retries it later after its backoff.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.admin import output
from aic_worker.catalog import lease
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.config import WorkerConfig, add_device_option
from aic_worker.jobs.queue import answering_workers, publish

POLL_SECONDS = 0.5
FINISHED = (JobState.DONE, JobState.QUARANTINED, JobState.FAILED)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local", action="store_true", help="run the jobs in this process even when workers are up"
    )
    add_device_option(parser, when="when run here: ")


def runs_locally(args: argparse.Namespace) -> bool:
    """--local, or no worker answering (then say so)."""
    if args.local:
        return True
    try:
        workers = answering_workers()
    except Exception as error:  # the broker away: nobody to send the jobs to
        output.stderr().print(
            f"broker unreachable ({type(error).__name__}): running the jobs in this process"
        )
        return True
    if not workers:
        output.stderr().print("no worker answering: running the jobs in this process")
        return True
    output.stderr().print(f"sending the jobs to {len(workers)} worker(s)")
    return False


def run_as_asked(
    args: argparse.Namespace,
    sessions: sessionmaker[Session],
    job_ids: Sequence[int],
    kind: JobKind,
    description: str,
) -> dict[int, JobState]:
    """run_batch() where the command line says (--local, --device) or where workers are."""
    if not job_ids:
        return {}
    local = runs_locally(args)
    return run_batch(sessions, job_ids, kind, local=local, device=args.device, description=description)


def run_batch(
    sessions: sessionmaker[Session],
    job_ids: Sequence[int],
    kind: JobKind,
    *,
    local: bool,
    device: str | None = None,
    description: str = "jobs",
) -> dict[int, JobState]:
    """Run committed jobs `job_ids` and return each one's state at the end."""
    if not job_ids:
        return {}
    with output.progress() as bar:
        task = bar.add_task(description, total=len(job_ids))
        if local:
            with _warnings_to(bar.console):
                _run_here(sessions, job_ids, device, lambda: bar.advance(task))
        else:
            for job_id in job_ids:
                publish(job_id, kind)
            while (finished := _count_finished(sessions, job_ids)) < len(job_ids):
                bar.update(task, completed=finished)
                time.sleep(POLL_SECONDS)
            bar.update(task, completed=len(job_ids))
    return _states(sessions, job_ids)


def _run_here(sessions: sessionmaker[Session], job_ids: Sequence[int], device: str | None, advance) -> None:
    from aic_worker.codec_cache import CodecCache  # loads torch: only when running jobs here
    from aic_worker.jobs.runner import claim, execute

    config = WorkerConfig.from_env()
    codecs = CodecCache(device or config.device)
    for job_id in job_ids:
        owner = lease.new_owner()
        job = claim(sessions, job_id, owner, config)
        if job is not None:  # None: a worker has it, or it finished meanwhile
            execute(sessions, codecs, job, owner, config)
        advance()


def _states(sessions: sessionmaker[Session], job_ids: Sequence[int]) -> dict[int, JobState]:
    with sessions() as session:
        return dict(session.execute(select(Job.id, Job.state).where(Job.id.in_(job_ids))).all())


def _count_finished(sessions: sessionmaker[Session], job_ids: Sequence[int]) -> int:
    return sum(state in FINISHED for state in _states(sessions, job_ids).values())


@contextmanager
def _warnings_to(console: Console) -> Iterator[None]:
    """Jobs' warnings (a quarantined job and why) above the progress bar, unless logging is set up."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = RichHandler(console=console, level=logging.WARNING, show_time=False, show_path=False)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
