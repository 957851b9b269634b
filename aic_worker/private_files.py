"""Files and folders AIC creates: private to their owner whatever the umask, and durable.

Archives hold people's photos, and the catalog says what they are and where. So every file
AIC creates (a staged `.aic`, a restored original, the SQLite catalog) is 0600 and every
folder (AIC_HOME, the archive tree, done folders) 0700, set explicitly rather than left to
the umask (0o022 would make them world-readable). With AIC_GROUP_READABLE=1 they are 0640 and
0750 instead: readable by the owner's group (e.g. a backup user), never by others.

A folder created here is also fsynced in its parent, so its name survives a power cut
before a file inside it is relied on (DESIGN.md, invariant 2). Imports nothing of AIC:
the catalog's engine and the store both use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

GROUP_READABLE_VARIABLE = "AIC_GROUP_READABLE"
TRUE_WORDS = ("1", "true", "yes", "on")


def group_readable(env: Mapping[str, str] | None = None) -> bool:
    """Whether AIC_GROUP_READABLE asks for group-readable files (1, true, yes or on)."""
    env = os.environ if env is None else env
    raw = env.get(GROUP_READABLE_VARIABLE, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in TRUE_WORDS:
        return True
    raise ValueError(f"{GROUP_READABLE_VARIABLE} must be 1 or 0, got {raw!r}")


def file_mode(env: Mapping[str, str] | None = None) -> int:
    """0600, or 0640 with AIC_GROUP_READABLE."""
    return 0o640 if group_readable(env) else 0o600


def folder_mode(env: Mapping[str, str] | None = None) -> int:
    """0700, or 0750 with AIC_GROUP_READABLE."""
    return 0o750 if group_readable(env) else 0o700


def fsync_directory(directory: Path) -> None:
    """Make a folder's entries (a new, renamed or removed name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents, private and fsynced in their parents; returns those created.

    Folders that exist are left as they are (the operator's archive root, say).
    """
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.is_dir():
            break
        missing.append(candidate)
    mode = folder_mode()
    created = []
    for candidate in reversed(missing):
        try:
            os.mkdir(candidate, mode)
        except FileExistsError:
            if not candidate.is_dir():
                raise
            continue  # another process made it meanwhile
        os.chmod(candidate, mode)  # the umask narrowed mkdir's mode; this sets it exactly
        fsync_directory(candidate.parent)
        created.append(candidate)
    return created


def create_private_file(path: Path) -> int:
    """Create `path` (never an existing one: FileExistsError) with file_mode(); returns its open fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, file_mode())
    except BaseException:
        os.close(fd)
        raise
    return fd
