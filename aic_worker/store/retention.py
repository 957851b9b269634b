"""Which archive versions keep their files: keep-versions, and removing the rest for real.

A source keeps the files of its current version and of its newest intact superseded ones,
`keep` in all (default 1: the current one only). `keep` is the most that any of the
source's jobs asked for (its folder's setting in its compress jobs' parameters, or a
recompress's `--keep-versions`), so a later `prune` or recompress can't undo what one run
asked to keep. The others are superseded versions whose space is freed:
```
 before that transaction: hash each kept version's file (CheckedFiles), holding no lock
 in the transaction that commits a new version (under its job's lease), or prune's own:
   take each kept version's answer if its row and file (by stat) are the ones hashed, else
   hash it there ─► the current one fails its sha256: retire nothing
   (an older version may be the only intact copy) ─► else mark removed (removed_at) the
   damaged superseded ones (not counted) and the intact ones beyond keep
 after that commit:
   delete their files (remove_retired: the file still holds the version's bytes, or the
   version was damaged when retired and the file is its altered copy)
```
Damage is what the file's sha256 says at that moment, never a damage mark alone: verify may
have marked a file that was only briefly missing. A crash in between leaves marked files
on disk (too many, never too few); `aic-admin prune` deletes them, unless the file is the
source's only intact copy left, which it takes back (removed_at cleared). Torch-free: the
admin commands use it without loading the codec.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, utcnow
from aic_worker.store import archive

log = logging.getLogger(__name__)
DEFAULT_KEEP_VERSIONS = 1

Intact = Callable[[ArchiveVersion], bool]  # whether a version's file holds its recorded bytes


@dataclass(frozen=True)
class Retired:
    """A version marked removed whose file is deleted after the commit."""

    path: Path
    sha256: str
    damaged: bool  # its file did not hold its bytes when retired: whatever it holds is an altered copy


def holds(path: Path, sha256: str) -> bool:
    """Whether `path` is a regular file (not a link) holding the bytes of sha256 `sha256`."""
    try:
        return path.is_file() and not path.is_symlink() and archive.file_sha256(path) == sha256
    except OSError:
        return False


def file_intact(version: ArchiveVersion) -> bool:
    return holds(Path(version.path), version.sha256)


Signature = tuple[int, int, int, int, int] | None


def _signature(path: Path) -> Signature:
    """A regular file's device, inode, size, mtime and ctime, which change when it is replaced
    or written (ctime even when a copy sets the mtime back, as `cp -p` does); None for
    anything else (missing, a link)."""
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def kept_files(session: Session, source_ids: Collection[int]) -> list[tuple[str, str]]:
    """(path, sha256) of these sources' versions not removed: what CheckedFiles hashes."""
    return [
        (row.path, row.sha256)
        for row in session.execute(
            select(ArchiveVersion.path, ArchiveVersion.sha256).where(
                ArchiveVersion.source_id.in_(source_ids), ArchiveVersion.removed_at.is_(None)
            )
        )
    ]


class CheckedFiles:
    """An `Intact` whose hashing is done before the transaction that retires versions, so that
    SQLite's write lock (PostgreSQL: the version rows' locks) is not held while whole files are
    read (until 0.4.0 a worker's commit hashed every kept file of its source inside).

    Inside, each version the transaction locked is judged again: one whose row (path, sha256)
    and file (device, inode, size, mtime) are those hashed keeps its answer; any other, a
    version committed since or a file changed since, is hashed there.
    """

    def __init__(self, files: Iterable[tuple[str, str]]) -> None:
        self._known: dict[tuple[str, str], tuple[Signature, bool]] = {}
        for path, sha256 in files:
            self._check(path, sha256)

    def _check(self, path: str, sha256: str) -> bool:
        before = _signature(Path(path))
        sound = before is not None and holds(Path(path), sha256)
        if before == _signature(Path(path)):
            self._known[(path, sha256)] = (before, sound)
        else:  # written while it was read: hashed again when asked
            self._known.pop((path, sha256), None)
        return sound

    def __call__(self, version: ArchiveVersion) -> bool:
        known = self._known.get((version.path, version.sha256))
        if known is not None and known[0] == _signature(Path(version.path)):
            return known[1]
        return self._check(version.path, version.sha256)


def _keep_of(parameters: object) -> int | None:
    value = parameters.get("keep_versions") if isinstance(parameters, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def source_keep_versions(session: Session, source_id: int) -> int:
    """The most versions any of the source's compress or recompress jobs asked to keep (default 1)."""
    asked = session.scalars(
        select(Job.parameters).where(
            Job.source_id == source_id, Job.kind.in_((JobKind.COMPRESS, JobKind.RECOMPRESS))
        )
    )
    return max((k for k in map(_keep_of, asked) if k is not None), default=DEFAULT_KEEP_VERSIONS)


def kept_versions(session: Session, source_id: int) -> Sequence[ArchiveVersion]:
    """The source's versions not removed, the current one first, then newest first; locked."""
    return session.scalars(
        select(ArchiveVersion)
        .where(ArchiveVersion.source_id == source_id, ArchiveVersion.removed_at.is_(None))
        .order_by(ArchiveVersion.superseded_by.is_not(None), ArchiveVersion.id.desc())
        .with_for_update()
    ).all()


def to_retire(versions: Sequence[ArchiveVersion], keep: int, intact: Intact) -> list[Retired]:
    """Which of `versions` (kept_versions' order) to retire so that `keep` intact ones stay.

    Nothing while the current version is missing or fails its sha256: the newest intact
    older one may be the only copy of the image left. Damaged superseded versions go first
    and never count toward `keep`.
    """
    current = next((v for v in versions if v.superseded_by is None), None)
    if current is None or not intact(current):
        return []
    doomed: list[Retired] = []
    kept = 1
    for version in versions:
        if version.superseded_by is None:
            continue
        sound = intact(version)
        if sound and kept < keep:
            kept += 1
        else:
            doomed.append(Retired(Path(version.path), version.sha256, damaged=not sound))
    return doomed


def retire_superseded(
    session: Session, source_id: int, keep: int | None = None, intact: Intact = file_intact,
    *, dry_run: bool = False,
) -> list[Retired]:
    """Mark removed what to_retire chooses (`keep` None: the source's); the caller deletes the
    files after its commit. `dry_run`: choose only."""
    versions = kept_versions(session, source_id)
    doomed = to_retire(versions, keep or source_keep_versions(session, source_id), intact)
    if not dry_run:
        now, damaged = utcnow(), {r.path: r.damaged for r in doomed}
        for version in versions:
            if Path(version.path) in damaged:
                version.removed_at = now
                if damaged[Path(version.path)] and version.damaged_at is None:
                    version.damaged_at = now  # so that prune knows its file for an altered copy
    return doomed


def remove_retired(files: list[Retired]) -> int:
    """Delete the files of versions marked removed (committed); the bytes really freed.

    A file is deleted if it still holds its version's bytes (the retirement checked that an
    intact current version stays), or if the version was damaged when retired (an altered
    copy). Other bytes at the name of a version that was intact are left: put there by hand.
    """
    freed = 0
    for retired in files:
        try:
            size = retired.path.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        if archive.remove_version(retired.path, None if retired.damaged else retired.sha256):
            freed += size
            log.info("removed superseded %s", retired.path)
        else:
            log.warning("%s holds other bytes than its superseded version: left", retired.path)
    return freed
