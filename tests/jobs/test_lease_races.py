"""Two workers on one job: a lease lost after `place`, a loser racing a winner, a kill before the commit.

Real catalog (SQLite and PostgreSQL), real files, the real pipeline; only the timing of the
commits is gated (each attempt pauses just before its commit transaction) or a process is
killed right after `place` returned.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.models import Job, JobState, database_now
from aic_worker.codec_cache import CodecCache
from aic_worker.jobs.errors import LeaseLostError
from aic_worker.jobs.pipeline import RUNNERS, JobContext
from aic_worker.store import archive
from aic_worker.store.policy import Policy
from tests.jobs.conftest import CODECS, Harness

SPAWN = multiprocessing.get_context("spawn")


@dataclass
class GatedContext(JobContext):
    """A job context whose commit waits for `gate` (after saying it got there)."""

    reached: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)

    def db(self, work):  # type: ignore[no-untyped-def]
        if getattr(work, "__name__", "") == "commit":
            self.reached.set()
            assert self.gate.wait(120)
        return super().db(work)


class Attempt(threading.Thread):
    """One worker's attempt at a job: claimed now, run in a thread up to its gated commit."""

    def __init__(self, harness: Harness, job: Job, context: type[GatedContext] = GatedContext) -> None:
        super().__init__(daemon=True)
        owner = lease.new_owner()
        with harness.sessions() as session, session.begin():
            claimed = lease.claim(session, owner, job_id=job.id)
        assert claimed is not None
        self.job = claimed
        self.ctx = context(harness.sessions, owner, CODECS, 5.0, threading.Event())
        self.error: BaseException | None = None
        self.start()
        assert self.ctx.reached.wait(120), "the attempt did not get to its commit"

    def run(self) -> None:
        try:
            RUNNERS[self.job.kind](self.ctx, self.job)
        except BaseException as error:  # reported to the test
            self.error = error

    def commit(self) -> BaseException | None:
        self.ctx.gate.set()
        self.join(120)
        assert not self.is_alive()
        return self.error


def _reap(harness: Harness) -> list[int]:
    """The reaper, an hour later by the database's clock: the lease has expired."""
    with harness.sessions() as session, session.begin():
        return lease.reap(session, now=database_now(session) + timedelta(hours=1))


def _job(harness: Harness, job_id: int) -> Job:
    with harness.sessions() as session:
        return session.get(Job, job_id)


def _aic_files(harness: Harness) -> list[str]:
    return sorted(p.name for p in harness.archive.rglob("*") if p.is_file())


def test_a_loser_never_removes_the_file_a_winner_adopted(harness: Harness) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    a = Attempt(harness, job)  # A placed a.png.aic and stalls before its commit
    assert _reap(harness) == [job.id]
    b = Attempt(harness, job)  # B re-encoded the same bytes and adopted A's file
    assert isinstance(a.commit(), LeaseLostError)
    assert b.commit() is None
    assert _job(harness, job.id).state is JobState.DONE
    [version] = harness.versions()
    placed = Path(version.path)
    assert placed.is_file(), "the catalog points at a file the loser removed"
    assert archive.file_sha256(placed) == version.sha256
    assert not original.exists()  # deleted only because its archive is there
    assert _aic_files(harness) == ["a.png.aic"]


def test_a_winner_that_commits_first_keeps_its_file_from_the_loser(harness: Harness) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    a = Attempt(harness, job)
    assert _reap(harness) == [job.id]
    b = Attempt(harness, job)
    assert b.commit() is None
    loser = a.commit()  # finds its very bytes committed at its path, by the winner
    assert isinstance(loser, LeaseLostError), "the loser reported done for work it did not commit"
    [version] = harness.versions()
    assert archive.file_sha256(Path(version.path)) == version.sha256 and not original.exists()


def test_a_lease_lost_after_place_drops_the_work_and_its_file(harness: Harness) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    a = Attempt(harness, job)
    assert _aic_files(harness) == ["a.png.aic"]  # placed, not committed
    assert _reap(harness) == [job.id]
    assert isinstance(a.commit(), LeaseLostError)
    assert harness.versions() == [] and original.exists()
    assert _aic_files(harness) == []  # nobody recorded it: the loser removed what it placed
    assert harness.run(job).state is JobState.DONE
    assert _aic_files(harness) == ["a.png.aic"] and not original.exists()


def _run_and_die_after_place(url: str, job_id: int) -> None:
    """A worker that claims the job, runs it, and is killed the moment its file is placed."""
    real_place = archive.place

    def place_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_place(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    archive.place = place_then_die
    sessions = session_factory(create_catalog_engine(url))
    owner = lease.new_owner()
    with sessions() as session, session.begin():
        job = lease.claim(session, owner, job_id=job_id)
    RUNNERS[job.kind](JobContext(sessions, owner, CodecCache("cpu"), 5.0, threading.Event()), job)


def test_a_kill_between_place_and_commit_is_adopted_by_the_next_attempt(
    harness: Harness, catalog_url: str
) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    worker = SPAWN.Process(target=_run_and_die_after_place, args=(catalog_url, job.id))
    worker.start()
    worker.join(300)
    assert worker.exitcode == -signal.SIGKILL
    placed = harness.archive / "a.png.aic"
    assert _aic_files(harness) == ["a.png.aic"] and harness.versions() == []
    assert _job(harness, job.id).state is JobState.RUNNING and original.exists()
    assert _reap(harness) == [job.id]
    assert harness.run(job).state is JobState.DONE
    [version] = harness.versions()
    assert version.path == str(placed) and version.sha256 == hashlib.sha256(placed.read_bytes()).hexdigest()
    assert _aic_files(harness) == ["a.png.aic"] and not original.exists()


@dataclass
class AckLostContext(JobContext):
    """A commit that went through but whose answer was lost: the transaction is run again."""

    def db(self, work):  # type: ignore[no-untyped-def]
        if getattr(work, "__name__", "") == "commit":
            super().db(work)
        return super().db(work)


def test_a_retried_commit_whose_first_try_went_through_is_done(harness: Harness) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original)
    owner = lease.new_owner()
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, owner, job_id=job.id)
    RUNNERS[claimed.kind](AckLostContext(harness.sessions, owner, CODECS, 5.0, threading.Event()), claimed)
    assert _job(harness, job.id).state is JobState.DONE and len(harness.versions()) == 1


@dataclass
class OutageContext(GatedContext):
    """A gated commit whose first try meets a database outage, which lasts until `meanwhile` ran."""

    meanwhile: Callable[[], object] = lambda: None

    def db(self, work):  # type: ignore[no-untyped-def]
        if getattr(work, "__name__", "") != "commit":
            return super().db(work)
        tries = 0

        def commit(session):  # type: ignore[no-untyped-def]
            nonlocal tries
            tries += 1
            if tries == 1:
                event.listen(session, "do_orm_execute", _connection_lost, once=True)
            else:
                self.meanwhile()
            return work(session)

        return super().db(commit)


def _connection_lost(state: object) -> None:
    raise OperationalError("SELECT …", {}, ConnectionResetError("server closed the connection"))


def test_a_loser_whose_first_commit_failed_says_lease_lost_after_the_winner_committed(
    harness: Harness,
) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    a = Attempt(harness, job, OutageContext)  # A placed a.png.aic; its commit will meet an outage
    assert _reap(harness) == [job.id]
    b = Attempt(harness, job)  # B adopted A's file
    a.ctx.meanwhile = b.commit  # B commits while A waits out the outage
    loser = a.commit()
    assert b.error is None and _job(harness, job.id).state is JobState.DONE
    assert isinstance(loser, LeaseLostError), "the loser's retried commit took the winner's for its own"
    [version] = harness.versions()
    assert archive.file_sha256(Path(version.path)) == version.sha256 and not original.exists()
