"""What happens to an original once its archive version is committed: keep, move or delete.

Called only after the commit (DESIGN.md, invariant 2); a crash before it leaves the
original where it was, which is the safe side.
"""

from __future__ import annotations

import enum
import os
import shutil
from pathlib import Path

from aic_worker.store.archive import fsync_directory, relative_inside


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
    target = _free_path(done_dir / relative_inside(original, folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(original, target)  # rename on one filesystem, copy then unlink across two
    fsync_directory(target.parent)
    fsync_directory(original.parent)
    return target


def _free_path(path: Path) -> Path:
    """`path`, or `name.2.ext`, `name.3.ext`… : a move never overwrites an earlier original."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate
