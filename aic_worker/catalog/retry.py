"""Failed and quarantined jobs back to pending (`aic-admin retry`, the API's retry), a batch at a time.

```
 cutoff = the database's now
 loop: lock up to BATCH jobs in the chosen states, last changed by cutoff (given ids or a
       source's jobs: the next BATCH of them, by primary key) ─► none left: stop
       ─► UPDATE them to pending (quarantined ones: attempts, reason, finished_at cleared;
          their quarantined sources back to archived or new) ─► commit ─► publish the batch
```
Each batch is a few set-based statements in its own short transaction, and the caller keeps
counts and at most `limit` ids, so a million failed jobs cost one batch of memory and never
hold SQLite's write lock for long (0.4.0 loaded every matching job as an object in one
transaction). The batches come from `ix_jobs_state_updated` without any order: sorting
by id would read every remaining matching job again for each batch. The cutoff ends the loop:
a job that fails again after its batch's commit has a later `updated_at` (the database's
clock, lease.py) and is left for the next retry instead of being taken round again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from sqlalchemy import ColumnElement, case, exists, literal, select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.models import (
    ArchiveVersion,
    Job,
    JobKind,
    JobState,
    Source,
    SourceState,
    database_now,
)

BATCH = 1000  # jobs reset per transaction

# Wakes a worker for a committed job; False when the broker is away (jobs/queue.publish).
Publish = Callable[[int, JobKind], bool]


@dataclass
class Retried:
    """What a retry did: how many jobs went back to pending, how many were published, the lowest ids."""

    count: int = 0
    published: int = 0
    ids: list[int] = field(default_factory=list)  # the lowest `limit` of them, ascending


def retry_jobs(
    session: Session,
    publish: Publish,
    states: Sequence[JobState],
    *,
    job_ids: Sequence[int] | None = None,
    source_id: int | None = None,
    limit: int = 0,
    batch: int = BATCH,
) -> Retried:
    """Jobs in `states` (narrowed to `job_ids` or to one source's) back to pending, each batch
    published after its commit; `session` is used for one short transaction per batch."""
    with session.begin():
        cutoff = database_now(session)
        if source_id is not None:  # a source has a few jobs: read by ix_jobs_source_id, then by id
            given = None if job_ids is None else set(job_ids)
            job_ids = [i for i in session.scalars(select(Job.id).where(Job.source_id == source_id))
                       if given is None or i in given]
    retried = Retried()
    if job_ids is None:
        chosen = [Job.state.in_(states), Job.updated_at <= cutoff]
        parts: Iterable[list[ColumnElement[bool]]] = repeat(chosen)  # until a batch finds none
    else:  # by primary key, `batch` at a time: each given job is looked at once
        wanted = sorted(set(job_ids))
        parts = ([Job.id.in_(wanted[i : i + batch])] for i in range(0, len(wanted), batch))
    for where in parts:
        jobs = _reset_batch(session, where, states, batch)
        if job_ids is None and not jobs:
            break
        retried.count += len(jobs)
        retried.published += sum(publish(job_id, kind) for job_id, kind in jobs)
        retried.ids = heapq.nsmallest(limit, [*retried.ids, *(job_id for job_id, _ in jobs)])
    return retried


def _reset_batch(
    session: Session, where: list[ColumnElement[bool]], states: Sequence[JobState], batch: int
) -> list[tuple[int, JobKind]]:
    """Those of up to `batch` jobs matching `where` (locked) that are in `states`, set pending and
    committed; their ids and kinds."""
    with session.begin():
        query = select(Job.id, Job.kind, Job.state).where(*where).limit(batch).with_for_update()
        jobs = [(row.id, row.kind, row.state) for row in session.execute(query) if row.state in states]
        if not jobs:
            return []
        now = database_now(session)
        quarantined = [job_id for job_id, _, state in jobs if state is JobState.QUARANTINED]
        others = [job_id for job_id, _, state in jobs if state is not JobState.QUARANTINED]
        pending = {"state": JobState.PENDING, "not_before": None, "updated_at": now}
        if others:
            session.execute(update(Job).where(Job.id.in_(others)).values(pending),
                            execution_options={"synchronize_session": False})
        if quarantined:
            session.execute(
                update(Job)
                .where(Job.id.in_(quarantined))
                .values({**pending, "attempts": 0, "quarantine_reason": None, "finished_at": None}),
                execution_options={"synchronize_session": False},
            )
            has_current = exists().where(
                ArchiveVersion.source_id == Source.id, ArchiveVersion.superseded_by.is_(None)
            )
            session.execute(
                update(Source)
                .where(
                    Source.state == SourceState.QUARANTINED,
                    Source.id.in_(select(Job.source_id).where(Job.id.in_(quarantined))),
                )
                .values(
                    state=case(
                        (has_current, literal(SourceState.ARCHIVED, Source.state.type)),
                        else_=literal(SourceState.NEW, Source.state.type),
                    ),
                    reason=None,
                ),
                execution_options={"synchronize_session": False},
            )
    return [(job_id, kind) for job_id, kind, _ in jobs]
