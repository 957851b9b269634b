"""The archive on disk: where a `.aic` file goes, and getting it there without a torn state.

Layout: `<archive root>/<path relative to its watched folder>.aic`, e.g. the original
`/photos/2024/a.png` of the folder `/photos` becomes `<root>/2024/a.png.aic`. When that name
is taken (another source, or an earlier version of the same one) the next free of
`a.png.2.aic`, `a.png.3.aic`, … is used.

Writing (DESIGN.md, invariant 2):
```
 stage(): temp name `.a.png.aic.job<id>.<random>.tmp` beside the target ─► write ─► fsync
          ─► fsync the folder ─► read back, compare sha256
 (the caller decodes the staged file and measures it)
 place(): hard-link to the final name (never overwrites) ─► unlink temp ─► fsync the folder
```
A crash leaves at most a temp file, which the next attempt at the same job removes
(remove_stale_temps), or a placed file that was never committed, which that attempt
recognises by its content and adopts. Torch-free.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

SUFFIX = ".aic"
MAX_CANDIDATES = 10_000


class ArchiveWriteError(OSError):
    """The staged file did not read back as written (a disk or filesystem fault)."""


def relative_inside(path: Path, folder: Path) -> Path:
    """`path` relative to `folder`; only its name when it is not inside (no `..` escapes)."""
    try:
        relative = Path(os.path.normpath(path)).relative_to(os.path.normpath(folder))
    except ValueError:
        return Path(path.name)
    if not relative.parts or ".." in relative.parts:
        return Path(path.name)
    return relative


def archive_path(archive_root: Path, folder: Path, original: Path) -> Path:
    """The preferred archive name of `original` from watched `folder`."""
    relative = relative_inside(original, folder)
    return archive_root / relative.with_name(relative.name + SUFFIX)


def candidates(preferred: Path) -> Iterator[Path]:
    """`preferred`, then `name.2.aic`, `name.3.aic`, …"""
    yield preferred
    stem = preferred.name.removesuffix(SUFFIX)
    for n in range(2, MAX_CANDIDATES):
        yield preferred.with_name(f"{stem}.{n}{SUFFIX}")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def fsync_directory(directory: Path) -> None:
    """Make a folder's entries (a new, renamed or removed name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(final: Path, job_id: int) -> str:
    return f".{final.name}.job{job_id}."


def remove_stale_temps(directory: Path, job_id: int) -> list[Path]:
    """Delete temp files an earlier, interrupted attempt at job `job_id` left in `directory`."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(f".*.job{job_id}.*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def stage(final: Path, data: bytes, job_id: int) -> Path:
    """Write `data` durably under a temp name beside `final` and check it reads back; returns it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f"{_temp_prefix(final, job_id)}{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        fsync_directory(final.parent)
        if temp.read_bytes() != data:
            raise ArchiveWriteError(errno.EIO, "staged file does not read back as written", str(temp))
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _link_no_clobber(temp: Path, final: Path) -> None:
    """Give `temp` the name `final` unless that name exists (FileExistsError)."""
    try:
        os.link(temp, final)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # A filesystem without hard links: check, then rename (a narrow race between workers).
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "archive name taken", str(final)) from error
        os.rename(temp, final)
        return
    temp.unlink()


def place(
    temp: Path, names: Iterable[Path], sha256: str, taken: Callable[[Path], bool] = lambda _: False
) -> tuple[Path, bool]:
    """Move a staged, verified file to the first free of `names` (see candidates()); returns (path, created).

    A name the catalog records (`taken`) is skipped. A name that exists on disk but is not
    recorded holds either the same bytes, left by an attempt that crashed before its commit,
    which is adopted (created False), or something else, which is skipped.
    """
    tried = None
    for final in names:
        tried = final
        if taken(final):
            continue
        try:
            _link_no_clobber(temp, final)
        except FileExistsError:
            if final.is_file() and not final.is_symlink() and file_sha256(final) == sha256:
                temp.unlink()
                fsync_directory(final.parent)
                return final, False
            continue
        fsync_directory(final.parent)
        return final, True
    raise FileExistsError(errno.EEXIST, "no free name for the file", str(tried))
