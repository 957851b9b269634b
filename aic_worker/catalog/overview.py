"""The archive one source at a time: what `aic-admin ls`, `show`, `stats` and `recompress` read.

```
 sources ─┬─ CURRENT   its current archive version (superseded_by IS NULL), if any
          ├─ PRIMARY   the path it is known by: the first one not removed, else the first
          └─ LATEST    its latest compress or recompress job, if any
```
One statement, outer joins, so a source without a version, a path or a job still has its
row; callers add WHERE clauses on Source and CURRENT. In joined(), PRIMARY and LATEST are
found by correlated subqueries on the source's own rows (indexes on source_id), so the
database works out only the rows a query returns: `show ID` or a page of `ls` costs the
same on a catalog of ten sources or ten million. joined_whole() joins the same rows in the
shape for reading all of them. `state` folds the three into the one word `ls`
shows: pending, running, done, failed, quarantined, or damaged (the current version's file
was found missing or altered).

Two shapes of the same rows: source_rows() gives ORM objects, for commands that act on a
few sources at a time; joined() with state_column() gives plain columns, for reports over
many (catalog/reports.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select, union
from sqlalchemy.orm import Session, aliased

from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, Source, SourcePath, SourceState

CURRENT = aliased(ArchiveVersion, name="current_version")
PRIMARY = aliased(SourcePath, name="primary_path")
LATEST = aliased(Job, name="latest_job")
ARCHIVING_KINDS = (JobKind.COMPRESS, JobKind.RECOMPRESS)
DAMAGED = "damaged"
STATES = (*(state.value for state in JobState), DAMAGED)  # what a source's state can say
UNFINISHED = (JobState.PENDING, JobState.RUNNING, JobState.FAILED, JobState.QUARANTINED)


@dataclass(frozen=True)
class SourceRow:
    source: Source
    path: SourcePath | None
    version: ArchiveVersion | None
    job: Job | None

    @property
    def state(self) -> str:
        """What state_column() says, for one row already loaded."""
        if self.source.state is SourceState.QUARANTINED:
            return JobState.QUARANTINED.value
        if self.job is not None and self.job.state is not JobState.DONE:
            return self.job.state.value
        if self.version is not None and self.version.damaged_at is not None:
            return DAMAGED
        if self.version is not None or self.job is not None:
            return JobState.DONE.value
        return JobState.PENDING.value

    @property
    def reason(self) -> str | None:
        """Why it is quarantined or failed, if it is."""
        if self.source.state is SourceState.QUARANTINED:
            return self.source.reason
        if self.job is not None and self.job.state in (JobState.FAILED, JobState.QUARANTINED):
            return self.job.quarantine_reason or self.job.last_error
        return None


def _primary_path_id() -> ColumnElement[int]:
    return (
        select(SourcePath.id)
        .where(SourcePath.source_id == Source.id)
        .order_by(SourcePath.removed_at.is_not(None), SourcePath.id)
        .limit(1)
        .correlate(Source)
        .scalar_subquery()
    )


def _latest_job_id() -> ColumnElement[int]:
    return (
        select(Job.id)
        .where(Job.source_id == Source.id, Job.kind.in_(ARCHIVING_KINDS))
        .order_by(Job.id.desc())
        .limit(1)
        .correlate(Source)
        .scalar_subquery()
    )


def with_current(query: Select[Any]) -> Select[Any]:
    """`query` (selecting from sources) with CURRENT outer-joined."""
    return query.outerjoin(CURRENT, and_(CURRENT.source_id == Source.id, CURRENT.superseded_by.is_(None)))


def with_primary(query: Select[Any]) -> Select[Any]:
    """`query` (selecting from sources) with PRIMARY outer-joined."""
    return query.outerjoin(PRIMARY, PRIMARY.id == _primary_path_id())


def joined(query: Select[Any]) -> Select[Any]:
    """`query` (selecting from sources) with CURRENT, PRIMARY and LATEST outer-joined."""
    return with_primary(with_current(query)).outerjoin(LATEST, LATEST.id == _latest_job_id())


def joined_whole(query: Select[Any], *, latest: bool = True) -> Select[Any]:
    """joined(), shaped for reading the whole catalog (stats, a listing of every source): PRIMARY
    and LATEST come from one GROUP BY over their tables each, which the database hashes or
    merges in one pass, rather than from a lookup per source. latest=False leaves LATEST
    out, for queries that don't need the jobs (a pass over a million of them)."""
    primary = (
        select(
            SourcePath.source_id,
            func.coalesce(
                func.min(case((SourcePath.removed_at.is_(None), SourcePath.id))), func.min(SourcePath.id)
            ).label("path_id"),
        )
        .group_by(SourcePath.source_id)
        .subquery()
    )
    query = (
        with_current(query.select_from(Source))
        .outerjoin(primary, primary.c.source_id == Source.id)
        .outerjoin(PRIMARY, PRIMARY.id == primary.c.path_id)
    )
    if not latest:
        return query
    jobs = (
        select(Job.source_id, func.max(Job.id).label("job_id"))
        .where(Job.kind.in_(ARCHIVING_KINDS))
        .group_by(Job.source_id)
        .subquery()
    )
    return query.outerjoin(jobs, jobs.c.source_id == Source.id).outerjoin(LATEST, LATEST.id == jobs.c.job_id)


def state_column() -> ColumnElement[str]:
    """The source's state as SQL (SourceRow.state): quarantined content; else the latest
    archiving job's state while it is unfinished; else damaged, when verify found the current
    version's file missing or altered; else done once archived; else pending (no job yet)."""
    return case(
        (Source.state == SourceState.QUARANTINED, literal(JobState.QUARANTINED.value)),
        (LATEST.state.in_(UNFINISHED), LATEST.state),
        (CURRENT.damaged_at.is_not(None), literal(DAMAGED)),
        (or_(CURRENT.id.is_not(None), LATEST.id.is_not(None)), literal(JobState.DONE.value)),
        else_=literal(JobState.PENDING.value),
    )


def reason_column() -> ColumnElement[str | None]:
    """Why it is quarantined or failed, if it is (SourceRow.reason)."""
    return case(
        (Source.state == SourceState.QUARANTINED, Source.reason),
        (
            LATEST.state.in_((JobState.FAILED, JobState.QUARANTINED)),
            func.coalesce(LATEST.quarantine_reason, LATEST.last_error),
        ),
    )


def candidates(state: str) -> list[Select[Any]]:
    """Queries for the ids of the few sources that can be in `state`, from indexes: sources
    with an archiving job in that state, quarantined or new sources, damaged current
    versions. Nothing for done, the state of nearly every source."""
    if state == JobState.DONE.value:
        return []
    if state == DAMAGED:
        return [
            select(ArchiveVersion.source_id).where(
                ArchiveVersion.damaged_at.is_not(None), ArchiveVersion.superseded_by.is_(None)
            )
        ]
    found = [select(Job.source_id).where(Job.state == state, Job.kind.in_(ARCHIVING_KINDS))]
    if state == JobState.QUARANTINED.value:
        found.append(select(Source.id).where(Source.state == SourceState.QUARANTINED))
    if state == JobState.PENDING.value:
        found.append(select(Source.id).where(Source.state == SourceState.NEW))
    return found


def state_is(state: str) -> list[ColumnElement[bool]]:
    """WHERE clauses for sources in `state`: the exact test, and beside it the state's
    candidates(), so that the exact test runs on those only."""
    found = candidates(state)
    return [state_column() == state] + ([Source.id.in_(union(*found))] if found else [])


def overview(*conditions: ColumnElement[bool]) -> Select[tuple[Source, SourcePath, ArchiveVersion, Job]]:
    """The rows' statement, in source id order."""
    return joined(select(Source, PRIMARY, CURRENT, LATEST)).where(*conditions).order_by(Source.id)


def source_rows(session: Session, *conditions: ColumnElement[bool]) -> Iterator[SourceRow]:
    for source, path, version, job in session.execute(overview(*conditions)):
        yield SourceRow(source, path, version, job)
