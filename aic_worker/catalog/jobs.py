"""Creating jobs, idempotently: asking twice for the same work returns the first job.

A compress job is unique per (content, target ratio, model), enforced by the database
(models.Job, uq_jobs_compress), so two watcher events for one file, or two watchers, can't
produce two archives (DESIGN.md, invariant 3). Other kinds are deduplicated against the
same work still pending, running or waiting to retry; once finished they may be asked again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from aic_worker.catalog.models import Job, JobKind, JobState, utcnow
from aic_worker.catalog.upsert import insert_if_absent

# The column is fixed-point with this many decimals; rounding first keeps lookups exact.
RATIO_DECIMALS = 4
ACTIVE_STATES = (JobState.PENDING, JobState.RUNNING, JobState.FAILED)


def enqueue_job(
    session: Session,
    kind: JobKind,
    source_id: int,
    *,
    target_ratio: float | None = None,
    model_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Create a pending job, or find the one already doing this work; returns (job, created).

    The caller publishes the job's id to the broker after committing, when created (or when
    the existing job is still pending: a lost message costs nothing to resend).
    """
    now = now or utcnow()
    ratio = None if target_ratio is None else round(float(target_ratio), RATIO_DECIMALS)
    params = dict(parameters or {})
    same_work = select(Job).where(
        Job.kind == kind,
        Job.source_id == source_id,
        Job.target_ratio.is_not_distinct_from(ratio),
        Job.model_id.is_not_distinct_from(model_id),
    )
    if kind is JobKind.COMPRESS:
        created = insert_if_absent(
            session,
            Job,
            {
                "kind": kind,
                "state": JobState.PENDING,
                "source_id": source_id,
                "target_ratio": ratio,
                "model_id": model_id,
                "parameters": params,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            key=["source_id", "target_ratio", "model_id"],
            where=text("kind = 'compress'"),
        )
        return session.scalars(same_work).one(), created
    for job in session.scalars(same_work.where(Job.state.in_(ACTIVE_STATES)).order_by(Job.id)):
        if job.parameters == params:
            return job, False
    job = Job(
        kind=kind,
        state=JobState.PENDING,
        source_id=source_id,
        target_ratio=ratio,
        model_id=model_id,
        parameters=params,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job, True
