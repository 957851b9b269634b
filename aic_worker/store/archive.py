"""The archive on disk: where a `.aic` file goes, and getting it there without a torn state.

Layout: `<archive root>/<path relative to its watched folder>.aic`, e.g. the original
`/photos/2024/a.png` of the folder `/photos` becomes `<root>/2024/a.png.aic`. When that name
is taken (another source, or an earlier version of the same one) the next free of
`a.png.2.aic`, `a.png.3.aic`, … is used. A passthrough version (the original's bytes,
kept because a `.aic` at the folder's ratio would not be smaller) is named the same way
with `.orig` in place of `.aic`: `<root>/2024/a.jpg.orig`, `a.jpg.2.orig`, …; its bytes
are the original's, bit for bit, and it is never decoded as a `.aic`.

Writing (DESIGN.md, invariant 2):
```
 stage(): private folders, each fsynced in its parent ─► temp name `.a.png.aic.job<id>.<8 hex>.tmp`
          beside the target, mode 0600 ─► write ─► fsync ─► fsync the folder ─► read back
 (the caller decodes the staged file and measures it)
 place(): to the final name without ever overwriting (move_no_clobber) ─► fsync the folder
```
A crash leaves at most a temp file, which the next attempt at the same job removes
(remove_stale_temps), or a placed file that was never committed, which that attempt
recognises by its content and adopts. A superseded version's file is removed (remove_version)
only after the catalog has committed the version that replaces it. Torch-free.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aic_worker.private_files import create_private_file, fsync_directory, make_folders

SUFFIX = ".aic"
PASSTHROUGH_SUFFIX = ".orig"
MAX_CANDIDATES = 10_000


class ArchiveWriteError(OSError):
    """The staged file did not read back as written (a disk or filesystem fault)."""


class DamagedFileError(ValueError):
    """A stored file that is missing, a folder, or not the bytes the catalog recorded."""


def recorded_bytes(path: str | Path, sha256: str) -> bytes:
    """A stored file's bytes, if they are still the ones the catalog recorded.

    Other OS errors (permissions, I/O) pass through: they say nothing of the file's bytes.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DamagedFileError(f"archive file {path} is missing") from None
    except IsADirectoryError:
        raise DamagedFileError(f"archive file {path} is a folder") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DamagedFileError(f"archive file {path} does not match its recorded sha256")
    return data


def relative_inside(path: Path, folder: Path) -> Path:
    """`path` relative to `folder`; only its name when it is not inside (no `..` escapes)."""
    try:
        relative = Path(os.path.normpath(path)).relative_to(os.path.normpath(folder))
    except ValueError:
        return Path(path.name)
    if not relative.parts or ".." in relative.parts:
        return Path(path.name)
    return relative


def archive_path(archive_root: Path, folder: Path, original: Path, suffix: str = SUFFIX) -> Path:
    """The preferred archive name of `original` from watched `folder` (`suffix`: .aic or .orig)."""
    relative = relative_inside(original, folder)
    return archive_root / relative.with_name(relative.name + suffix)


def with_suffix(path: Path, suffix: str) -> Path:
    """`path` (an archive name) with `suffix` in place of its .aic or .orig: `a.jpg.aic` -> `a.jpg.orig`."""
    name = path.name
    for known in (SUFFIX, PASSTHROUGH_SUFFIX):
        name = name.removesuffix(known)
    return path.with_name(name + suffix)


def candidates(preferred: Path) -> Iterator[Path]:
    """`preferred`, then `name.2.aic`, `name.3.aic`, … (or `.orig`, as `preferred` ends)."""
    yield preferred
    suffix = PASSTHROUGH_SUFFIX if preferred.name.endswith(PASSTHROUGH_SUFFIX) else SUFFIX
    stem = preferred.name.removesuffix(suffix)
    for n in range(2, MAX_CANDIDATES):
        yield preferred.with_name(f"{stem}.{n}{suffix}")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# `.<final name>.job<id>.<8 hex>.tmp`: read from the right, the job is exact whatever the name holds.
_TEMP_NAME = re.compile(r"^\..+\.job(\d+)\.[0-9a-f]{8}\.tmp$", re.DOTALL)


def temp_name(final: Path, job_id: int) -> str:
    """A fresh temp name for job `job_id`'s file `final`, in `final`'s folder."""
    return f".{final.name}.job{job_id}.{uuid.uuid4().hex[:8]}.tmp"


def temp_job(name: str) -> int | None:
    """The job whose temp file `name` is (temp_name()'s form), else None."""
    match = _TEMP_NAME.match(name)
    return int(match[1]) if match else None


def temp_files(directory: Path) -> Iterator[tuple[Path, int]]:
    """Each temp file (temp_name()'s form) in `directory`, with the job it belongs to."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        job = temp_job(path.name)
        if job is not None and path.is_file() and not path.is_symlink():
            yield path, job


def remove_version(path: Path, sha256: str | None) -> bool:
    """Delete a superseded version's file if it still holds `sha256`; whether it is gone now.

    Only called for a version the catalog has marked removed after a newer version was
    committed (store/retention.py). A file at that name with other bytes (archive names are
    never reused, so put there by hand) is left, and False says so; `sha256` None is for a
    version verify found damaged: any regular file there is its altered copy.
    """
    try:
        if path.is_symlink() or not path.is_file():
            return not path.exists()
        if sha256 is not None and file_sha256(path) != sha256:
            return False
    except FileNotFoundError:
        return True
    path.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return True


def remove_stale_temps(directory: Path, job_id: int) -> list[Path]:
    """Delete temp files an earlier, interrupted attempt at job `job_id` left in `directory`.

    Only that job's: `.x.job3.png.aic.job33.<hex>.tmp` is job 33's, never job 3's.
    """
    stale = [path for path, job in temp_files(directory) if job == job_id]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def stage(final: Path, data: bytes, job_id: int) -> Path:
    """Write `data` durably under a temp name beside `final` and check it reads back; returns it.

    Folders made for it are private and fsynced in their parents; the file is private
    (private_files.py), whatever the umask.
    """
    make_folders(final.parent)
    temp = final.with_name(temp_name(final, job_id))
    fd = create_private_file(temp)
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


_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK)
_NO_RENAMEAT2 = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2_noreplace(source: Path, target: Path) -> None:
    """Linux renameat2(RENAME_NOREPLACE): an atomic rename that fails (EEXIST) on a taken name."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(source))
    result = function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(source), None, str(target))


def _rename_reserved(source: Path, target: Path) -> None:
    """Claim `target` with an exclusive create, then rename over that claim (only ours to replace).

    A crash in between leaves an empty file at `target`, which nobody adopts (its sha256
    differs) and nothing overwrites.
    """
    os.close(create_private_file(target))  # FileExistsError: the name is taken
    try:
        os.rename(source, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def move_no_clobber(source: Path, target: Path) -> None:
    """Give `source` the name `target` on the same filesystem; FileExistsError if `target` exists.

    Never overwrites, even against another process choosing the same name at the same time:
    a hard link (then unlink `source`); where the filesystem has none, renameat2 with
    RENAME_NOREPLACE; where that is missing too, a rename over a name claimed by an exclusive
    create. Across filesystems it raises OSError(EXDEV). The caller fsyncs the folders.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    else:
        os.unlink(source)
        return
    try:
        _renameat2_noreplace(source, target)
    except OSError as error:
        if error.errno not in _NO_RENAMEAT2:
            raise
        _rename_reserved(source, target)


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
            move_no_clobber(temp, final)
        except FileExistsError:
            if final.is_file() and not final.is_symlink() and file_sha256(final) == sha256:
                temp.unlink()
                fsync_directory(final.parent)
                return final, False
            continue
        fsync_directory(final.parent)
        return final, True
    raise FileExistsError(errno.EEXIST, "no free name for the file", str(tried))
