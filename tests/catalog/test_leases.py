"""Claiming, renewing, completing, failing and reaping jobs, with real concurrent processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import Job, JobKind, JobState, Source, database_now

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
SPAWN = multiprocessing.get_context("spawn")  # a forked child would share the parent's connections


@pytest.fixture
def add_jobs(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> Callable[[int], list[int]]:
    """Enqueue `n` compress jobs, each for its own content, committed; returns their ids."""

    def add(n: int) -> list[int]:
        jobs = [
            enqueue_job(
                session, JobKind.COMPRESS, add_source(f"photo {i}").id, target_ratio=10, model_id=model_id
            )
            for i in range(n)
        ]
        session.commit()
        return [job.id for job, _created in jobs]

    return add


def _state(session: Session, job_id: int) -> Job:
    session.expire_all()
    job = session.get(Job, job_id)
    assert job is not None
    return job


def test_claim_takes_the_oldest_claimable_job_and_counts_an_attempt(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    first, second = add_jobs(2)
    job = lease.claim(session, "w1", lease=LEASE, now=T0)
    session.commit()
    assert job is not None and job.id == first
    stored = _state(session, first)
    assert (stored.state, stored.lease_owner, stored.attempts) == (JobState.RUNNING, "w1", 1)
    assert stored.lease_expires_at == T0 + LEASE
    assert lease.claim(session, "w2", now=T0).id == second
    assert lease.claim(session, "w3", now=T0) is None


def test_claim_by_id_is_what_a_broker_message_does(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    first, second = add_jobs(2)
    assert lease.claim(session, "w1", job_id=second, now=T0).id == second
    session.commit()
    assert lease.claim(session, "w2", job_id=second, now=T0) is None  # a redelivered message
    assert lease.claim(session, "w2", kinds=[JobKind.VERIFY], now=T0) is None
    assert lease.claim(session, "w2", kinds=[JobKind.COMPRESS], now=T0).id == first


def test_only_the_holder_renews_or_completes(session: Session, add_jobs: Callable[[int], list[int]]) -> None:
    (job_id,) = add_jobs(1)
    lease.claim(session, "w1", lease=LEASE, now=T0)
    session.commit()
    assert not lease.renew(session, job_id, "intruder", now=T0)
    assert not lease.complete(session, job_id, "intruder", now=T0)
    assert lease.fail(session, job_id, "intruder", "boom", now=T0) is None
    assert lease.renew(session, job_id, "w1", lease=LEASE, now=T0 + timedelta(minutes=4))
    assert _state(session, job_id).lease_expires_at == T0 + timedelta(minutes=9)
    assert lease.complete(session, job_id, "w1", now=T0 + timedelta(minutes=6))
    session.commit()
    done = _state(session, job_id)
    assert (done.state, done.lease_owner, done.lease_expires_at, done.finished_at) == (
        JobState.DONE,
        "w1",  # who completed it: lease.completed_by
        None,
        T0 + timedelta(minutes=6),
    )
    assert not lease.complete(session, job_id, "w1", now=T0)  # a second completion is refused
    assert lease.completed_by(session, job_id, "w1") and not lease.completed_by(session, job_id, "intruder")


def test_a_failed_job_retries_after_a_growing_backoff_then_is_quarantined(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    (job_id,) = add_jobs(1)
    now = T0
    for attempt in range(1, 4):
        assert lease.claim(session, "w", now=now).id == job_id
        state = lease.fail(session, job_id, "w", f"CUDA out of memory #{attempt}", max_attempts=3, now=now)
        session.commit()
        if attempt < 3:
            assert state is JobState.FAILED
            assert _state(session, job_id).not_before == now + lease.backoff(attempt)
            assert lease.claim(session, "w", now=now + lease.backoff(attempt) - timedelta(seconds=1)) is None
            now += lease.backoff(attempt)
    assert lease.backoff(2) == 2 * lease.backoff(1)
    job = _state(session, job_id)
    assert (job.state, job.attempts) == (JobState.QUARANTINED, 3)
    assert "3 attempts" in job.quarantine_reason and "CUDA out of memory #3" in job.quarantine_reason
    assert lease.claim(session, "w", now=now + timedelta(days=1)) is None


def test_an_error_retrying_cannot_fix_quarantines_at_once(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    (job_id,) = add_jobs(1)
    lease.claim(session, "w", now=T0)
    assert lease.fail(session, job_id, "w", "not an image", retry=False, now=T0) is JobState.QUARANTINED
    session.commit()
    assert _state(session, job_id).quarantine_reason == "not an image"


def test_claimable_job_ids_lists_what_the_broker_should_carry(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    a, b, c = add_jobs(3)
    lease.claim(session, "w", job_id=b, now=T0)
    lease.claim(session, "w", job_id=c, now=T0)
    lease.fail(session, c, "w", "transient", now=T0)
    session.commit()
    assert lease.claimable_job_ids(session, now=T0) == [a]
    assert lease.claimable_job_ids(session, now=T0 + lease.backoff(1)) == [a, c]


def _claim_then_die(url: str, job_id: int, now: datetime) -> None:
    """A worker that takes a lease and is killed before it can finish."""
    engine = create_catalog_engine(url)
    with session_factory(engine).begin() as session:
        assert lease.claim(session, "doomed-worker", job_id=job_id, lease=LEASE, now=now) is not None
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_reaper_recovers_a_lease_whose_holder_died(
    catalog_url: str, session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    (job_id,) = add_jobs(1)
    holder = SPAWN.Process(target=_claim_then_die, args=(catalog_url, job_id, T0))
    holder.start()
    holder.join(timeout=120)
    assert holder.exitcode == -signal.SIGKILL
    assert _state(session, job_id).lease_owner == "doomed-worker"

    assert lease.reap(session, now=T0 + LEASE - timedelta(seconds=1)) == []  # not expired yet
    assert lease.reap(session, now=T0 + LEASE + timedelta(seconds=1)) == [job_id]
    session.commit()
    recovered = _state(session, job_id)
    assert (recovered.state, recovered.lease_owner) == (JobState.PENDING, None)
    assert "doomed-worker" in recovered.last_error

    assert lease.claim(session, "w2", now=T0 + LEASE * 2).id == job_id
    assert not lease.complete(session, job_id, "doomed-worker")  # had it only been slow
    assert lease.complete(session, job_id, "w2")
    session.commit()
    assert (_state(session, job_id).state, _state(session, job_id).attempts) == (JobState.DONE, 2)


def test_a_job_whose_holders_keep_dying_is_quarantined_by_the_reaper(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    (job_id,) = add_jobs(1)
    now = T0
    for _ in range(2):
        lease.claim(session, "w", lease=LEASE, now=now)
        now += LEASE * 2
        reaped = lease.reap(session, max_attempts=2, now=now)
        session.commit()
    assert reaped == []
    job = _state(session, job_id)
    assert job.state is JobState.QUARANTINED and "lease expired" in job.quarantine_reason


def _drain(url: str, start: Any, results: Any) -> None:
    """A worker process: claim and complete jobs until none are left; report what it did."""
    engine = create_catalog_engine(url)
    sessions = session_factory(engine)
    owner = lease.new_owner()
    completed: list[int | str] = []
    start.wait(timeout=120)
    try:
        while True:
            with sessions.begin() as session:
                job = lease.claim(session, owner)
                job_id = job.id if job else None
            if job_id is None:
                break
            with sessions.begin() as session:
                if not lease.complete(session, job_id, owner):
                    raise AssertionError(f"{owner} lost the lease on job {job_id}")
            completed.append(job_id)
    except Exception as error:  # reported, so the test shows it rather than timing out
        completed.append(repr(error))
    engine.dispose()
    results.put(completed)


def test_four_processes_claiming_200_jobs_do_each_exactly_once(
    catalog_url: str, catalog: Engine, session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    job_ids = add_jobs(200)
    start, results = SPAWN.Barrier(4), SPAWN.Queue()
    workers = [SPAWN.Process(target=_drain, args=(catalog_url, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    completed = [results.get(timeout=150) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    done = [job_id for batch in completed for job_id in batch]
    print("DIST", [len(b) for b in completed])
    assert sorted(done) == sorted(job_ids)  # each once, none twice
    states = session.execute(
        select(Job.state, Job.attempts, func.count()).group_by(Job.state, Job.attempts)
    ).all()
    assert states == [(JobState.DONE, 1, 200)]


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_leases_take_their_time_from_the_database(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    """PostgreSQL's now() is its transaction's start: a lease granted later in the transaction
    carries that time, not the clock of the host that asked for it."""
    (job_id,) = add_jobs(1)
    started = database_now(session)
    time.sleep(1.0)
    job = lease.claim(session, "w", job_id=job_id, lease=LEASE)
    assert (job.started_at, job.lease_expires_at) == (started, started + LEASE)
    assert lease.renew(session, job_id, "w", lease=LEASE)
    session.commit()
    assert _state(session, job_id).updated_at == started


def test_a_silent_holder_is_released_and_a_renewing_one_never_whatever_its_pid(
    session: Session, add_jobs: Callable[[int], list[int]]
) -> None:
    """Liveness from the database's clock (the last renewal), not from a PID that may belong to
    another PID namespace or host: `aic-admin run` takes back only leases silent too long."""
    from aic_worker.admin.run_command import _release_dead_leases

    silent, renewing = add_jobs(2)
    host, no_such_pid = socket.gethostname(), 2**22 + 17  # above Linux's pid_max: no process here
    now = database_now(session)
    lease.claim(session, f"{host}:{no_such_pid}:in-a-container", job_id=renewing, now=now)
    lease.claim(session, f"{host}:{os.getpid()}:hung", job_id=silent, now=now - LEASE)
    session.commit()
    assert _release_dead_leases(session) == [silent]
    session.commit()
    assert _state(session, renewing).state is JobState.RUNNING
    released = _state(session, silent)
    assert released.state is JobState.PENDING and "silent since" in released.last_error
    assert lease.silence_limit(300) == timedelta(seconds=200)
