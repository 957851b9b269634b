"""When a file is complete: it held still for the stability window, then it opened and decoded.

A copy in progress, a slow upload or a browser download all look like a growing file; no
event says "finished" (a writer may close and reopen it). So a candidate is taken only
after its size, mtime and inode stayed the same for `window` seconds, measured on our
monotonic clock from the last change we saw (an event, which also re-reads the signature,
or a stat that found it changed), and then only if Pillow decodes it. Every candidate goes
through this, live events and reconciliation scans alike: paperless-ngx's start-up scan
skipped it, and took half-written files after a restart.

The tracker holds at most `capacity` candidates; callers hold back (events wait in the
inbox, scans pause) while it is full, so thousands of arrivals take bounded memory.
"""

from __future__ import annotations

import heapq
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from aic_watch.config import FolderConfig

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Signature:
    """What must hold still: a write changes size or mtime, a replacement changes the inode."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


def file_mtime(st: os.stat_result) -> datetime:
    """The file's mtime as the catalog stores it (UTC, whole microseconds, no float rounding)."""
    return EPOCH + timedelta(microseconds=st.st_mtime_ns // 1000)


@dataclass(frozen=True)
class Candidate:
    """A file that held still for the window: ready to be hashed and decoded."""

    path: str
    folder: FolderConfig
    stat: os.stat_result


@dataclass
class _Pending:
    folder: FolderConfig
    signature: Signature
    changed_at: float  # monotonic time of the last change seen


def regular_file_stat(path: str) -> os.stat_result | None:
    """The file's stat, or None when it is gone or not a regular file (a FIFO would block a read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


class StabilityTracker:
    """Candidates waiting out the stability window, checked in order of when they are due."""

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._pending: dict[str, _Pending] = {}
        self._due: list[tuple[float, str]] = []  # a heap; entries go stale and are skipped

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    @property
    def room(self) -> int:
        return max(self.capacity - len(self._pending), 0)

    def add(self, path: str, folder: FolderConfig, now: float) -> None:
        """Start (or restart) the window of `path`: it was just created, written or moved in."""
        st = regular_file_stat(path)
        entry = self._pending.get(path)
        if st is None:
            self._pending.pop(path, None)  # its heap entry is skipped when it comes up
        elif entry is None:
            self._pending[path] = _Pending(folder, Signature.of(st), now)
            heapq.heappush(self._due, (now + self.window, path))
        else:  # its heap entry is re-queued when it comes up early
            entry.signature, entry.changed_at = Signature.of(st), now

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def due(self, now: float, limit: int) -> list[Candidate]:
        """Up to `limit` candidates whose window has passed with no change; they leave the tracker."""
        ready: list[Candidate] = []
        while self._due and self._due[0][0] <= now and len(ready) < limit:
            _, path = heapq.heappop(self._due)
            entry = self._pending.get(path)
            if entry is None:
                continue
            if entry.changed_at + self.window > now:  # touched by an event since it was queued
                heapq.heappush(self._due, (entry.changed_at + self.window, path))
                continue
            st = regular_file_stat(path)
            if st is None:  # gone (moved on, deleted, its folder unmounted): nothing to take
                del self._pending[path]
                continue
            signature = Signature.of(st)
            if signature != entry.signature:
                entry.signature, entry.changed_at = signature, now
                heapq.heappush(self._due, (now + self.window, path))
                continue
            del self._pending[path]
            ready.append(Candidate(path, entry.folder, st))
        return ready


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str | None


class NotAnImage(ValueError):
    """The file does not decode as an image; the message says why, in one line."""


def decode_check(source: str | BinaryIO) -> ImageInfo:
    """Open and fully decode `source`, a path or an open binary file.

    A truncated or corrupt file fails here, not in the worker.

    Pillow's decompression-bomb limit applies: an image above twice MAX_IMAGE_PIXELS is
    refused before any pixel memory is allocated (the codec refuses the same). JPEGs decode
    at 1/8 scale (draft mode), which still reads every byte of the entropy-coded data.
    """
    try:
        with Image.open(source) as image:
            info = ImageInfo(image.width, image.height, image.mode, image.format)
            if image.format == "JPEG":
                image.draft(image.mode, (max(image.width // 8, 1), max(image.height // 8, 1)))
            image.load()
    except UnidentifiedImageError:
        raise NotAnImage("not an image format Pillow can read") from None
    except OSError as error:
        if error.errno is not None:
            raise  # unreadable (permissions, I/O, gone): retried later, not the content's fault
        raise NotAnImage(f"{type(error).__name__}: {error}".replace("\n", " ")) from None
    except Exception as error:  # hostile input makes decoders raise anything (invariant 5)
        raise NotAnImage(f"{type(error).__name__}: {error}".replace("\n", " ")) from None
    return info
