"""Retrying failed and quarantined jobs a batch at a time (catalog/retry.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import Job, JobKind, JobState, Source, SourceState, database_now
from aic_worker.catalog.retry import retry_jobs
from aic_worker.catalog.sources import record_archive_version
from tests.catalog.conftest import sha

EARLIER = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _jobs(
    session: Session, add_source: Callable[..., Source], model_id: str, states: list[JobState]
) -> list[int]:
    """One compress job a source in each of `states`, last changed EARLIER; quarantined ones
    with their source quarantined too, every other source given a current version."""
    ids = []
    for i, state in enumerate(states):
        source = add_source(f"photo {i}")
        job, _ = enqueue_job(session, JobKind.COMPRESS, source.id, target_ratio=10, model_id=model_id)
        values = {"state": state, "attempts": 5, "updated_at": EARLIER, "last_error": "boom"}
        if state is JobState.QUARANTINED:
            values.update(quarantine_reason="boom", finished_at=EARLIER)
            source.state, source.reason = SourceState.QUARANTINED, "boom"
        elif state is JobState.FAILED:
            values.update(not_before=EARLIER + timedelta(days=9999))
        elif state is JobState.RUNNING:
            values.update(lease_owner="w1", lease_expires_at=EARLIER + timedelta(days=9999))
        if i % 2:
            record_archive_version(
                session, source_id=source.id, path=f"/archive/{i}.aic", bytes=100, sha256=sha(f"aic {i}"),
                target_ratio=10, achieved_ratio=10.5, model_id=model_id, psnr=30.0, ms_ssim=0.9,
            )
        session.execute(update(Job).where(Job.id == job.id).values(values))
        ids.append(job.id)
    session.commit()
    return ids


def _rows(session: Session, ids: list[int]) -> list[tuple[object, ...]]:
    """What retry may change of each job and its source (the transaction ended: retry_jobs begins its own)."""
    session.expire_all()
    rows = [
        tuple(session.execute(
            select(Job.state, Job.attempts, Job.not_before, Job.quarantine_reason, Job.finished_at,
                   Job.lease_owner, Source.state, Source.reason)
            .join(Source, Source.id == Job.source_id).where(Job.id == job_id)
        ).one())
        for job_id in ids
    ]
    session.rollback()
    return rows


def test_jobs_are_retried_in_batches_and_their_sources_released(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    f, q = JobState.FAILED, JobState.QUARANTINED
    states = [f, q, q, f, q, f, q, JobState.DONE, JobState.RUNNING, JobState.PENDING, q]
    ids = _jobs(session, add_source, model_id, states)
    failed = [i for i, s in zip(ids, states, strict=True) if s is f]
    quarantined = [i for i, s in zip(ids, states, strict=True) if s is q]
    others = [i for i, s in zip(ids, states, strict=True) if s not in (f, q)]
    untouched = _rows(session, others + quarantined)
    sent: list[int] = []

    def publish(job_id: int, kind: JobKind) -> bool:
        sent.append(job_id)
        return job_id != failed[1]  # the broker lost one: the reaper's to send

    retried = retry_jobs(session, publish, [f], limit=2, batch=2)
    assert (retried.count, retried.published, retried.ids) == (3, 2, failed[:2])
    assert sorted(sent) == failed
    assert all(row[:3] == (JobState.PENDING, 5, None) for row in _rows(session, failed))  # attempts kept
    assert _rows(session, others + quarantined) == untouched

    sent.clear()
    given = [quarantined[0], quarantined[2], quarantined[4], others[0], 999_999]  # done and unknown: not
    retried = retry_jobs(session, lambda job_id, kind: sent.append(job_id) is None, [q], job_ids=given,
                         limit=10, batch=2)
    assert (retried.count, retried.ids, sorted(sent)) == (3, given[:3], given[:3])
    retried = retry_jobs(session, lambda job_id, kind: True, [q, f], limit=0, batch=2)
    assert (retried.count, retried.ids) == (2, [])  # the other two quarantined; the failed are pending now
    by_job = dict(zip(ids, _rows(session, ids), strict=True))
    for job_id, state in zip(ids, states, strict=True):
        if state is q:
            has_version = ids.index(job_id) % 2 == 1
            assert by_job[job_id] == (
                JobState.PENDING, 0, None, None, None, None,
                SourceState.ARCHIVED if has_version else SourceState.NEW, None,
            )
    assert _rows(session, others) == untouched[: len(others)]


def test_a_job_that_fails_again_during_the_retry_waits_for_the_next(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    ids = _jobs(session, add_source, model_id, [JobState.FAILED] * 5)
    sent: list[int] = []

    def fail_again(job_id: int, kind: JobKind) -> bool:
        """A worker that takes the job at once and fails it again."""
        sent.append(job_id)
        time.sleep(0.002)  # past the retry's start by the database's clock (SQLite: milliseconds)
        with session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(
                state=JobState.FAILED, updated_at=database_now(session)
            ))
        return True

    assert retry_jobs(session, fail_again, [JobState.FAILED], batch=2).count == 5
    assert sorted(sent) == ids  # each once, though each was failed again
    assert retry_jobs(session, lambda job_id, kind: True, [JobState.FAILED], batch=2).count == 5
