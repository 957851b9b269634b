"""Running a batch of catalog jobs for `aic-admin recompress`, `verify` and `repair`.

```
 jobs committed ─┬─ workers answer a ping ──► publish ids ─► wait, polling the catalog
                 └─ --local, or no worker ──► claim each here ─► runner.execute (held compress and
                                              recompress jobs of one model: batch.execute_batch)
                                 both: a progress bar with ETA ─► each job's final state
```
Either way each job is claimed under a lease before it runs, exactly as a worker claims it,
so a job runs once in effect wherever it runs (DESIGN.md, invariant 3). A job that fails
counts as failed here; the workers' reaper retries it later after its backoff.

Run here while a daemon's workers are up, a job committed pending could be taken by their
reaper before this process claims it. So a command that creates jobs for local work holds
them from the start: it claims each in the transaction that creates it (`Holder.hold`), and
renews the leases of those still waiting between jobs. A job that is held elsewhere all the
same (an existing job a worker had, or a lease that ran out during a long job) is waited
for and counted with the state it ends in.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

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
ID_CHUNK = 10_000  # job ids in one IN list (SQLite binds at most 32,766 parameters a statement)


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


@dataclass(frozen=True)
class Holder:
    """The lease owner under which this process runs jobs itself (--local, or no worker)."""

    owner: str
    config: WorkerConfig

    @classmethod
    def new(cls) -> Holder:
        return cls(lease.new_owner(), WorkerConfig.from_env())

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.config.lease_seconds)

    def hold(self, session: Session, job_id: int) -> bool:
        """Claim job `job_id`, created in this transaction, so that no worker takes it before we run it."""
        return lease.claim(session, self.owner, job_id=job_id, lease=self.length) is not None


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
    holder: Holder | None = None,
) -> dict[int, JobState]:
    """Run committed jobs `job_ids` and return each one's state at the end.

    `holder`: run here under that lease, which may already hold some of the jobs.
    """
    if not job_ids:
        return {}
    with output.progress() as bar:
        task = bar.add_task(description, total=len(job_ids))
        if local:
            with _warnings_to(bar.console):
                _run_here(sessions, job_ids, device, holder or Holder.new(), lambda: bar.advance(task))
        else:
            for job_id in job_ids:
                publish(job_id, kind)
            while (finished := _count_finished(sessions, job_ids)) < len(job_ids):
                bar.update(task, completed=finished)
                time.sleep(POLL_SECONDS)
            bar.update(task, completed=len(job_ids))
    return _states(sessions, job_ids)


def _run_here(
    sessions: sessionmaker[Session], job_ids: Sequence[int], device: str | None, holder: Holder, advance
) -> None:
    """Each job claimed (or already held) and run here; held compress and recompress jobs of one
    model that follow each other run as one batch of up to AIC_BATCH, as a worker runs them."""
    from aic_worker.codec_cache import CodecCache  # loads torch: only when running jobs here
    from aic_worker.jobs.batch import KINDS, execute_batch
    from aic_worker.jobs.runner import claim, execute

    codecs = CodecCache(device or holder.config.device)
    n = 0
    while n < len(job_ids):
        job = _held(sessions, job_ids[n], holder) or claim(sessions, job_ids[n], holder.owner, holder.config)
        if job is None and not _finished_or_take_back(sessions, job_ids[n]):  # done elsewhere, or waiting
            time.sleep(POLL_SECONDS)
            continue
        following = job_ids[n + 1 :]
        group = [] if job is None else [job, *_held_companions(sessions, job, following, holder, KINDS)]
        if len(group) > 1:
            execute_batch(sessions, codecs, group, holder.owner, holder.config)
        elif job is not None:
            execute(sessions, codecs, job, holder.owner, holder.config)
        for _ in range(max(len(group), 1)):
            n += 1
            advance()
        _renew(sessions, job_ids[n:], holder)


def _held_companions(
    sessions: sessionmaker[Session], job: Job, following: Sequence[int], holder: Holder,
    kinds: Sequence[JobKind],
) -> list[Job]:
    """The held jobs right after `job` that a worker would batch with it: of `kinds`, of its model."""
    found: list[Job] = []
    if job.kind not in kinds:
        return found
    for job_id in following[: holder.config.batch_size - 1]:
        more = _held(sessions, job_id, holder)
        if more is None or more.kind not in kinds or more.model_id != job.model_id:
            break
        found.append(more)
    return found


def _held(sessions: sessionmaker[Session], job_id: int, holder: Holder) -> Job | None:
    """Job `job_id` if `holder` holds it (claimed when it was created), else None."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is not None and job.state is JobState.RUNNING and job.lease_owner == holder.owner:
            return job
        return None


def _finished_or_take_back(sessions: sessionmaker[Session], job_id: int) -> bool:
    """Whether job `job_id` (held elsewhere) has finished; expired leases are taken back meanwhile,
    as a worker's reaper would, so a holder that died does not keep us waiting."""
    with sessions() as session, session.begin():
        lease.reap(session)
        return session.get(Job, job_id).state in FINISHED


def _renew(sessions: sessionmaker[Session], job_ids: Sequence[int], holder: Holder) -> None:
    """Keep the leases of the held jobs still waiting their turn (a lost one is claimed or waited for)."""
    if job_ids:
        with sessions() as session, session.begin():
            for job_id in job_ids:
                lease.renew(session, job_id, holder.owner, lease=holder.length)


def _states(
    sessions: sessionmaker[Session], job_ids: Sequence[int], chunk: int = ID_CHUNK
) -> dict[int, JobState]:
    """Each job's state, `chunk` ids a statement: one IN list of every id failed beyond SQLite's
    32,766 bound parameters (a recompress of more sources than that)."""
    states: dict[int, JobState] = {}
    with sessions() as session:
        for start in range(0, len(job_ids), chunk):
            part = job_ids[start : start + chunk]
            states.update(session.execute(select(Job.id, Job.state).where(Job.id.in_(part))).all())
    return states


def _count_finished(sessions: sessionmaker[Session], job_ids: Sequence[int], chunk: int = ID_CHUNK) -> int:
    return sum(state in FINISHED for state in _states(sessions, job_ids, chunk).values())


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
