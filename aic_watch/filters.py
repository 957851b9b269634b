"""Which paths are candidates at all, before anything is opened.

Refused quietly: names of files still being written by other tools (`.part`, `.crdownload`,
`.tmp`, Office's `~$…`, dotfiles and dot-folders, where rsync and sync tools stage their
work), extensions outside the folder's patterns, and the archive's own outputs (anything
under the archive root or the done folder, should they lie inside the watched tree).
Symlinks are never taken (the worker won't open one either): one whose target is inside the
tree is refused quietly, since the target is taken on its own. Refused loudly (DESIGN.md,
invariant 5): a symlink that leads out of the watched tree (it is never opened, so nothing
outside the tree is read) and a name that isn't valid UTF-8 (the
catalog could not store it faithfully, so the worker could not find the file again).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aic_watch.config import FolderConfig

TEMP_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", "~")
TEMP_PREFIXES = ("~$", ".")


@dataclass(frozen=True)
class Refusal:
    reason: str
    loud: bool  # worth a warning: the user put something there that we will never take


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIXES) or name.lower().endswith(TEMP_SUFFIXES)


def under_outputs(path: str, outputs: Iterable[Path | None]) -> bool:
    """Whether `path` lies under one of `outputs` (an archive root, a done folder; None: none)."""
    return any(root is not None and _inside(path, str(root)) for root in outputs)


def is_output(folder: FolderConfig, path: str) -> bool:
    """Whether `path` lies under the archive root or the done folder."""
    return under_outputs(path, (folder.archive, folder.done_dir))


def skips_directory(folder: FolderConfig, path: str) -> bool:
    """Directories (inside `folder`) never entered: hidden or temporary ones and the archive's own."""
    return is_temporary(os.path.basename(path)) or is_output(folder, path)


def enters_directory(folder: FolderConfig, path: str) -> bool:
    """Whether a scan may go into `path`: a subfolder of a recursive folder, none of it skipped."""
    root = str(folder.path)
    if not folder.recursive or path == root or not _inside(path, root):
        return False
    parts = os.path.relpath(path, root).split(os.sep)
    return not any(is_temporary(part) for part in parts) and not is_output(folder, path)


def refuse(folder: FolderConfig, path: str) -> Refusal | None:
    """Why `path` (absolute, inside `folder`) is not a candidate; None when it is one."""
    root = str(folder.path)
    if not _inside(path, root) or path == root:
        return Refusal("outside the watched folder", loud=False)
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)
    if not folder.recursive and len(parts) > 1:
        return Refusal("in a subfolder of a non-recursive folder", loud=False)
    if any(is_temporary(part) for part in parts):
        return Refusal("temporary or hidden name", loud=False)
    extension = os.path.splitext(parts[-1])[1].lower().removeprefix(".")
    if extension not in folder.patterns:
        return Refusal(f"extension {extension!r} not in the folder's patterns", loud=False)
    if is_output(folder, path):
        return Refusal("an archive output", loud=False)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return Refusal("its name is not valid UTF-8; rename it to have it archived", loud=True)
    real = os.path.realpath(path)
    if not _inside(real, root):
        return Refusal(f"a symlink leading out of the watched tree (to {real}); not followed", loud=True)
    if os.path.islink(path):
        return Refusal("a symlink within the tree: its target is taken on its own", loud=False)
    return None
