"""What happens to an original once its archive version is committed: keep, move or delete.

Called only after the commit (DESIGN.md, invariant 2); a crash before it leaves the
original where it was, which is the safe side.

Moving never overwrites an earlier original, even when two workers move a file of the
same name at the same moment: each takes the first free of `a.png`, `a.2.png`, … by an
atomic no-overwrite move (archive.move_no_clobber). Across filesystems the original is
copied to a private temp name beside the target, fsynced with its folder, given its name
the same way, and only then unlinked.
```
 same filesystem:  link/rename-noreplace to a free name ─► fsync target folder ─► fsync original's folder
 across two:       copy to .a.png.move.<hex>.tmp ─► fsync ─► no-overwrite name ─► fsync folder
                   ─► unlink the original ─► fsync its folder
```
"""

from __future__ import annotations

import enum
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from aic_worker.private_files import create_private_file, fsync_directory, make_folders
from aic_worker.store.archive import MAX_CANDIDATES, move_no_clobber, relative_inside


class Policy(enum.StrEnum):
    KEEP = "keep"
    MOVE = "move"  # into the folder's done folder, mirroring its path in the watched folder
    DELETE = "delete"


def apply_policy(policy: Policy, original: Path, folder: Path, done_dir: Path | None) -> Path | None:
    """Carry out `policy` on `original`; returns where a moved original went, else None."""
    if policy is Policy.KEEP:
        return None
    if policy is Policy.DELETE:
        original.unlink(missing_ok=True)
        fsync_directory(original.parent)
        return None
    if done_dir is None:
        raise ValueError("the move policy needs a done folder")
    preferred = done_dir / relative_inside(original, folder)
    make_folders(preferred.parent)
    try:
        target = _move_to_free_name(original, preferred)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        target = _copy_across(original, preferred)
    fsync_directory(original.parent)
    return target


def _names(path: Path) -> Iterator[Path]:
    """`path`, then `name.2.ext`, `name.3.ext`, …"""
    yield path
    for n in range(2, MAX_CANDIDATES):
        yield path.with_name(f"{path.stem}.{n}{path.suffix}")


def _move_to_free_name(source: Path, preferred: Path) -> Path:
    """Move `source` to the first free of _names(preferred) on one filesystem; never overwrites."""
    for target in _names(preferred):
        try:
            move_no_clobber(source, target)
        except FileExistsError:
            continue
        fsync_directory(target.parent)
        return target
    raise FileExistsError(errno.EEXIST, "no free name in the done folder", str(preferred))


def _copy_across(original: Path, preferred: Path) -> Path:
    """The original onto another filesystem: a durable copy with its timestamps, then unlink it."""
    temp = preferred.with_name(f".{preferred.name}.move.{uuid.uuid4().hex[:8]}.tmp")
    fd = create_private_file(temp)
    try:
        with os.fdopen(fd, "wb") as copy, open(original, "rb") as source:
            shutil.copyfileobj(source, copy)
            copy.flush()
            shutil.copystat(original, temp)  # the original's mode and timestamps
            os.fsync(copy.fileno())
        target = _move_to_free_name(temp, preferred)  # fsyncs the target's folder
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    original.unlink()
    return target
