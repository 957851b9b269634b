"""Which archive versions keep their files: keep-versions, and removing the rest for real.

A source keeps its newest `keep_versions` versions' files (default 1: the current one
only; a folder setting, recorded in its compress jobs' parameters). The others are
superseded versions whose space is freed:
```
 in the transaction that commits a new version (under its job's lease), or prune's own:
   mark superseded versions beyond keep_versions removed (removed_at)
 after that commit:
   delete their files (remove_version: only a regular file holding the recorded bytes, or any
   regular file for a version verify found damaged)
```
A crash in between leaves marked files on disk (too many, never too few); `aic-admin prune`
deletes them. Torch-free: the admin commands use it without loading the codec.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, utcnow
from aic_worker.store import archive

log = logging.getLogger(__name__)
DEFAULT_KEEP_VERSIONS = 1

Retired = tuple[Path, str | None]  # a file to delete, and the sha256 it must hold (None: damaged, any)


def folder_keep_versions(session: Session, source_id: int) -> int:
    """The keep_versions of the source's folder, as its latest compress job recorded it (default 1)."""
    parameters = session.scalar(
        select(Job.parameters)
        .where(Job.source_id == source_id, Job.kind == JobKind.COMPRESS)
        .order_by(Job.id.desc())
        .limit(1)
    )
    value = (parameters or {}).get("keep_versions", DEFAULT_KEEP_VERSIONS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def superseded_beyond(session: Session, source_id: int, keep: int) -> list[ArchiveVersion]:
    """Superseded versions not yet removed beyond the source's newest `keep` (current included), locked."""
    kept = session.scalars(
        select(ArchiveVersion)
        .where(ArchiveVersion.source_id == source_id, ArchiveVersion.removed_at.is_(None))
        .order_by(ArchiveVersion.superseded_by.is_not(None), ArchiveVersion.id.desc())
        .with_for_update()
    ).all()
    return [v for v in kept[keep:] if v.superseded_by is not None]


def retire_superseded(session: Session, source_id: int, keep: int) -> list[Retired]:
    """Mark removed the versions superseded_beyond `keep`; the caller deletes their files after the commit."""
    now = utcnow()
    doomed = superseded_beyond(session, source_id, keep)
    for version in doomed:
        version.removed_at = now
    return [retired(v) for v in doomed]


def retired(version: ArchiveVersion) -> Retired:
    return Path(version.path), None if version.damaged_at is not None else version.sha256


def remove_retired(files: list[Retired]) -> int:
    """Delete the files of versions marked removed (committed); the bytes really freed."""
    freed = 0
    for path, sha256 in files:
        try:
            size = path.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        if archive.remove_version(path, sha256):
            freed += size
            log.info("removed superseded %s", path)
        else:
            log.warning("%s holds other bytes than its superseded version: left", path)
    return freed
