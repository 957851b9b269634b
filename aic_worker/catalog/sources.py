"""Recording what the watcher found and what the worker wrote: sources, paths, archive versions.

The watcher calls record_source() for every stable file; the worker calls
record_archive_version() in the same transaction as lease.complete(), so an archive version
exists in the catalog exactly when its job is done (DESIGN.md, invariants 2 and 3).

A file written with pauses longer than the stability window is taken half-written and its
content quarantined (it does not decode); when the path later holds the complete image, that
content is left with no path, job or version and record_source() deletes it, so the
quarantine lists only what is still there to fix.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.models import ArchiveVersion, Job, Source, SourcePath, SourceState, utcnow
from aic_worker.catalog.upsert import insert_if_absent


def record_source(
    session: Session,
    *,
    path: str,
    folder: str,
    sha256: str,
    size: int,
    mtime: datetime,
    width: int | None,
    height: int | None,
    mode: str | None,
    now: datetime | None = None,
) -> Source:
    """Record that `path` (in watched `folder`) holds this content; returns its source.

    Content already known under another path gains this path instead of a second record;
    a path whose file was replaced moves to the new content, and the old content, if it was
    quarantined and nothing else refers to it, is forgotten (forget_orphaned_quarantine).
    """
    now = now or utcnow()
    previous = session.scalar(select(SourcePath.source_id).where(SourcePath.path == path))
    insert_if_absent(
        session,
        Source,
        {
            "sha256": sha256,
            "size": size,
            "width": width,
            "height": height,
            "mode": mode,
            "first_seen_at": now,
            "state": SourceState.NEW,
        },
        key=["sha256"],
    )
    source = session.scalars(select(Source).where(Source.sha256 == sha256)).one()
    path_values = {"source_id": source.id, "folder": folder, "mtime": mtime, "removed_at": None}
    if not insert_if_absent(
        session, SourcePath, {"path": path, "first_seen_at": now, **path_values}, key=["path"]
    ):
        session.execute(update(SourcePath).where(SourcePath.path == path).values(path_values))
    if previous is not None and previous != source.id:
        forget_orphaned_quarantine(session, previous)
    return source


def forget_orphaned_quarantine(session: Session, source_id: int) -> None:
    """Delete quarantined content that no path, job or archive version refers to any more
    (a partial file's bytes once its path holds other content).

    One guarded statement: content recorded again meanwhile (another path, a job) is kept.
    """
    session.execute(
        delete(Source)
        .where(
            Source.id == source_id,
            Source.state == SourceState.QUARANTINED,
            ~exists().where(SourcePath.source_id == source_id),
            ~exists().where(Job.source_id == source_id),
            ~exists().where(ArchiveVersion.source_id == source_id),
        )
        .execution_options(synchronize_session=False)
    )


def find_source(session: Session, sha256: str) -> Source | None:
    """The source with this content, if the catalog knows it."""
    return session.scalars(select(Source).where(Source.sha256 == sha256)).one_or_none()


def find_path(session: Session, path: str) -> SourcePath | None:
    """What the catalog knows about `path`: a rescan skips hashing files whose size and mtime held."""
    return session.scalars(select(SourcePath).where(SourcePath.path == path)).one_or_none()


def mark_path_removed(session: Session, path: str, *, now: datetime | None = None) -> None:
    """The original at `path` is gone (moved or deleted by its folder's policy, or by a user)."""
    session.execute(update(SourcePath).where(SourcePath.path == path).values(removed_at=now or utcnow()))


def quarantine_source(session: Session, source_id: int, reason: str) -> None:
    """Set aside content that can't be archived (corrupt, hostile, too large), saying why."""
    session.execute(
        update(Source).where(Source.id == source_id).values(state=SourceState.QUARANTINED, reason=reason)
    )


def current_version(session: Session, source_id: int) -> ArchiveVersion | None:
    """The source's current archive version, if it has one."""
    return session.scalars(
        select(ArchiveVersion).where(
            ArchiveVersion.source_id == source_id, ArchiveVersion.superseded_by.is_(None)
        )
    ).one_or_none()


def record_archive_version(
    session: Session,
    *,
    source_id: int,
    path: str,
    bytes: int,
    sha256: str,
    target_ratio: float,
    achieved_ratio: float,
    model_id: str,
    psnr: float,
    ms_ssim: float,
    now: datetime | None = None,
) -> ArchiveVersion:
    """Record a written, verified `.aic` file as the source's current version.

    The previous current version, if any, becomes superseded by this one.
    """
    previous = session.scalars(
        select(ArchiveVersion)
        .where(ArchiveVersion.source_id == source_id, ArchiveVersion.superseded_by.is_(None))
        .with_for_update()
    ).one_or_none()
    if previous is not None:
        # Parked pointing at itself until the new row has an id: the unique index on current
        # versions then holds at every statement, not just at commit.
        previous.superseded_by = previous.id
        session.flush()
    version = ArchiveVersion(
        source_id=source_id,
        path=path,
        bytes=bytes,
        sha256=sha256,
        target_ratio=target_ratio,
        achieved_ratio=achieved_ratio,
        model_id=model_id,
        psnr=psnr,
        ms_ssim=ms_ssim,
        created_at=now or utcnow(),
    )
    session.add(version)
    session.flush()
    if previous is not None:
        previous.superseded_by = version.id
    session.execute(
        update(Source).where(Source.id == source_id).values(state=SourceState.ARCHIVED, reason=None)
    )
    session.flush()
    return version
