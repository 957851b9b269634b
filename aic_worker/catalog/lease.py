"""Job leases: who works on a job, until when, and what happens when they stop.

```
            claim()                complete()
 pending ──────────► running ──────────────────► done
 failed  ──(after     │  │ fail(), attempts left
   ▲      not_before) │  └──────────────────────► failed (not_before = now + backoff)
   │                  │ fail(retry=False), or no attempts left
   │                  └─────────────────────────► quarantined (quarantine_reason)
   └──────── reap(): lease expired ──► pending, or quarantined when no attempts are left
```
A claim counts as an attempt, so a job that kills its worker every time is quarantined
after MAX_ATTEMPTS rather than looping. Every transition checks the caller still holds
the lease: a worker whose lease was reaped and re-claimed can't complete the job a second
time (it must roll back, including any archive version it recorded in that transaction).
A done job keeps the name of the owner that completed it (completed_by).

Claiming is atomic: on PostgreSQL `FOR UPDATE SKIP LOCKED` lets concurrent workers take
different jobs without waiting; on SQLite every transaction starts with BEGIN IMMEDIATE
(engine.py), so the select-then-update runs under the database's single write lock.
Functions here flush but never commit: commit a claim right away, so the lease is visible.

Time is the database's (models.database_now), never a host's: a lease granted by one
host's clock and judged by another's could be taken from a live worker. `now=` is for tests.
A lease whose holder stopped renewing it for long (its row's `updated_at`, also the
database's time) can be taken back early (release_silent): taking a lease back is always
safe, only wasteful, because every transition and every commit checks the holder.

Who may touch a placed archive file is decided under lock_archive_path(): the commit that
records a path and a loser's removal of the file it placed take the same lock, so a file is
never removed once a row may reference it (see jobs/pipeline.py, write_version).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.models import Job, JobKind, JobState, database_now

DEFAULT_LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)


def new_owner() -> str:
    """A lease owner name, never reused: host and PID say who it was, for people reading it.

    Nothing judges liveness by the PID (wrong across PID namespaces and hosts): a holder is
    alive while it renews its lease, as the database's clock sees it (release_silent).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def backoff(attempts: int) -> timedelta:
    """How long a job that failed `attempts` times waits before its next try."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


def _claimable(now: datetime) -> ColumnElement[bool]:
    return and_(
        Job.state.in_((JobState.PENDING, JobState.FAILED)),
        or_(Job.not_before.is_(None), Job.not_before <= now),
    )


def _held_by(job_id: int, owner: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)


def hold(session: Session, job_id: int, owner: str) -> bool:
    """Whether `owner` holds job `job_id`, locking its row until the transaction ends.

    While the row is locked, the reaper skips the job and no one else can claim it, so the
    answer stays true until commit (SQLite: BEGIN IMMEDIATE already holds the write lock).
    """
    query = select(Job.id).where(_held_by(job_id, owner)).with_for_update()
    return session.scalar(query) is not None


def lock_archive_path(session: Session, path: str) -> None:
    """Serialise, until the transaction ends, everything that records or removes `path`.

    PostgreSQL: a transaction-scoped advisory lock on a hash of the path. SQLite: every
    transaction begins IMMEDIATE (engine.py), so the database's write lock already does it.
    """
    if session.get_bind().dialect.name == "sqlite":
        return
    key = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(key)))


def claim(
    session: Session,
    owner: str,
    *,
    job_id: int | None = None,
    kinds: Collection[JobKind] | None = None,
    model_id: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Job | None:
    """Lease job `job_id` (the broker's message) or else the oldest claimable job; None if none.

    None for a given `job_id` means there is nothing to do: it is done, quarantined, held by
    another worker, or waiting out its backoff (a redelivered message is harmless).
    `kinds` and `model_id` narrow the search for the oldest (a batch's companions).
    """
    now = now or database_now(session)
    query = select(Job).where(_claimable(now)).order_by(Job.id).limit(1).with_for_update(skip_locked=True)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    if kinds is not None:
        query = query.where(Job.kind.in_(kinds))
    if model_id is not None:
        query = query.where(Job.model_id == model_id)
    job = session.scalars(query).one_or_none()
    if job is None:
        return None
    job.state = JobState.RUNNING
    job.lease_owner = owner
    job.lease_expires_at = now + lease
    job.attempts += 1
    job.not_before = None
    job.started_at = now
    job.updated_at = now
    session.flush()
    return job


def renew(
    session: Session,
    job_id: int,
    owner: str,
    *,
    lease: timedelta = DEFAULT_LEASE,
    now: datetime | None = None,
) -> bool:
    """Extend a held lease; False means it was lost (reaped): stop working on the job."""
    now = now or database_now(session)
    result = session.execute(
        update(Job).where(_held_by(job_id, owner)).values(lease_expires_at=now + lease, updated_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def complete(session: Session, job_id: int, owner: str, *, now: datetime | None = None) -> bool:
    """Mark a held job done; False means the lease was lost and the caller must roll back.

    `lease_owner` stays on the done job, naming who completed it (completed_by).
    """
    now = now or database_now(session)
    result = session.execute(
        update(Job)
        .where(_held_by(job_id, owner))
        .values(state=JobState.DONE, lease_expires_at=None, finished_at=now, updated_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def completed_by(session: Session, job_id: int, owner: str) -> bool:
    """Whether `owner` completed job `job_id`: a transaction retried because its commit's answer
    was lost tells its own earlier commit from that of a worker that took the job over."""
    query = select(Job.id).where(Job.id == job_id, Job.state == JobState.DONE, Job.lease_owner == owner)
    return session.scalar(query) is not None


def fail(
    session: Session,
    job_id: int,
    owner: str,
    error: str,
    *,
    retry: bool = True,
    max_attempts: int = MAX_ATTEMPTS,
    now: datetime | None = None,
) -> JobState | None:
    """Record a failed attempt: retry after a backoff, or quarantine when retrying is pointless.

    retry=False is for errors another attempt can't fix (a corrupt image). Returns the job's
    new state, or None if the lease was lost (someone else owns the job now).
    """
    now = now or database_now(session)
    job = session.scalars(select(Job).where(_held_by(job_id, owner)).with_for_update()).one_or_none()
    if job is None:
        return None
    job.last_error = error
    job.lease_owner = None
    job.lease_expires_at = None
    job.updated_at = now
    if not retry or job.attempts >= max_attempts:
        job.state = JobState.QUARANTINED
        job.quarantine_reason = error if not retry else f"failed {job.attempts} attempts; last: {error}"
        job.finished_at = now
    else:
        job.state = JobState.FAILED
        job.not_before = now + backoff(job.attempts)
    session.flush()
    return job.state


def reap(session: Session, *, max_attempts: int = MAX_ATTEMPTS, now: datetime | None = None) -> list[int]:
    """Take back expired leases, whose holders died or hung; returns the ids now pending.

    The caller publishes those ids to the broker again. A job whose attempts are used up is
    quarantined instead: it has probably been killing its workers.
    """
    now = now or database_now(session)
    return _take_back(
        session,
        Job.lease_expires_at < now,
        lambda job: f"lease of {job.lease_owner} expired at {job.lease_expires_at:%Y-%m-%d %H:%M:%S}Z",
        "lease expired",
        max_attempts=max_attempts,
        now=now,
    )


def silence_limit(lease_seconds: float) -> timedelta:
    """How long a holder renewing every third of its lease can be silent before it counts as gone."""
    return timedelta(seconds=lease_seconds * 2 / 3)


def release_silent(
    session: Session,
    silent_for: timedelta,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    now: datetime | None = None,
) -> list[int]:
    """Take back running jobs whose holders have not renewed their leases for `silent_for`.

    A live holder renews every third of its lease (jobs/heartbeat.py), so a lease silent
    for two thirds of its length has missed two renewals: `aic-admin run` takes such leases
    back on start rather than waiting for them to expire. Silence is measured by the
    database's clock on the row's `updated_at`, which claim and renew set. Returns the ids
    now pending.
    """
    now = now or database_now(session)
    return _take_back(
        session,
        Job.updated_at < now - silent_for,
        lambda job: f"lease of {job.lease_owner} released: silent since {job.updated_at:%Y-%m-%d %H:%M:%S}Z",
        "holder silent",
        max_attempts=max_attempts,
        now=now,
    )


def _take_back(
    session: Session,
    which: ColumnElement[bool],
    error: Callable[[Job], str],
    summary: str,
    *,
    max_attempts: int,
    now: datetime,
) -> list[int]:
    """Running jobs `which` back to pending, or quarantined when no attempts are left.

    Returns the ids now pending. Rows another transaction holds are skipped (SKIP LOCKED).
    """
    jobs = session.scalars(
        select(Job)
        .where(Job.state == JobState.RUNNING, which)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    ).all()
    pending = []
    for job in jobs:
        job.last_error = error(job)
        job.lease_owner = None
        job.lease_expires_at = None
        job.updated_at = now
        if job.attempts >= max_attempts:
            job.state = JobState.QUARANTINED
            job.quarantine_reason = f"{summary} on each of {job.attempts} attempts; last: {job.last_error}"
            job.finished_at = now
        else:
            job.state = JobState.PENDING
            pending.append(job.id)
    session.flush()
    return pending


def claimable_job_ids(session: Session, *, limit: int = 1000, now: datetime | None = None) -> list[int]:
    """Jobs a worker could claim now, oldest first: what to re-publish if the broker lost messages."""
    query = select(Job.id).where(_claimable(now or database_now(session))).order_by(Job.id).limit(limit)
    return list(session.scalars(query))
