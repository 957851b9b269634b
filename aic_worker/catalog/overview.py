"""The archive one source at a time: what `aic-admin ls`, `show`, `stats` and `recompress` read.

```
 sources ─┬─ CURRENT   its current archive version (superseded_by IS NULL), if any
          ├─ PRIMARY   the path it is known by: the first one not removed, else the first
          └─ LATEST    its latest compress or recompress job, if any
```
One statement, outer joins, so a source without a version, a path or a job still has its
row; callers add WHERE clauses on Source and CURRENT. SourceRow.state folds the three into
the one word `ls` shows: pending, running, done, failed or quarantined.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, Source, SourcePath, SourceState

CURRENT = aliased(ArchiveVersion, name="current_version")
PRIMARY = aliased(SourcePath, name="primary_path")
LATEST = aliased(Job, name="latest_job")
ARCHIVING_KINDS = (JobKind.COMPRESS, JobKind.RECOMPRESS)
STATES = tuple(state.value for state in JobState)  # what SourceRow.state can say


@dataclass(frozen=True)
class SourceRow:
    source: Source
    path: SourcePath | None
    version: ArchiveVersion | None
    job: Job | None

    @property
    def state(self) -> str:
        """quarantined content; else the latest archiving job's state while it is unfinished;
        else done once archived; else pending (recorded, no job yet)."""
        if self.source.state is SourceState.QUARANTINED:
            return JobState.QUARANTINED.value
        if self.job is not None and self.job.state is not JobState.DONE:
            return self.job.state.value
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


def overview(*conditions: ColumnElement[bool]) -> Select[tuple[Source, SourcePath, ArchiveVersion, Job]]:
    """The rows' statement, in source id order."""
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
    latest = (
        select(Job.source_id, func.max(Job.id).label("job_id"))
        .where(Job.kind.in_(ARCHIVING_KINDS))
        .group_by(Job.source_id)
        .subquery()
    )
    return (
        select(Source, PRIMARY, CURRENT, LATEST)
        .outerjoin(CURRENT, and_(CURRENT.source_id == Source.id, CURRENT.superseded_by.is_(None)))
        .outerjoin(primary, primary.c.source_id == Source.id)
        .outerjoin(PRIMARY, PRIMARY.id == primary.c.path_id)
        .outerjoin(latest, latest.c.source_id == Source.id)
        .outerjoin(LATEST, LATEST.id == latest.c.job_id)
        .where(*conditions)
        .order_by(Source.id)
    )


def source_rows(session: Session, *conditions: ColumnElement[bool]) -> Iterator[SourceRow]:
    for source, path, version, job in session.execute(overview(*conditions)):
        yield SourceRow(source, path, version, job)
