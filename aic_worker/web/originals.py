"""An original served from one descriptor, as the image it was recorded as, never as a page.

```
 recorded path ─► open(O_NOFOLLOW|O_NONBLOCK) ─► fstat: regular, recorded size ─► sha256 of that fd
              ─► Pillow names the format (MIME, else octet-stream) ─► seek 0 ─► stream the same fd
```
One descriptor from the check to the last byte: a user who can write the watched folder
can't swap in a link to another file between the check and the read (the race of 0.4.0's
first version, which checked a path and then reopened it). O_NONBLOCK only so a FIFO put
there can't hang the open; it is cleared once fstat says regular file.

Only sources recorded as images are served, with the detected format's type; anything but
a raster type browsers show safely goes as an attachment, and every original carries
`Content-Security-Policy: sandbox` (headers.py): an `.html` file added by mistake can never
run script on the dashboard's origin, where the token is kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from PIL import Image

CHUNK = 1 << 20
OCTET_STREAM = "application/octet-stream"
# Raster formats browsers show as pictures and never run: these go inline, anything else is a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"})


@dataclass
class OpenedOriginal:
    file: BinaryIO  # positioned at 0, the same descriptor that was checked
    size: int
    media_type: str
    name: str

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, then the file closed."""
        with self.file:
            while chunk := self.file.read(CHUNK):
                yield chunk

    def headers(self) -> dict[str, str]:
        headers = {"Content-Length": str(self.size), "Cache-Control": "private, max-age=3600"}
        if self.media_type not in INLINE_TYPES:
            ascii_name = self.name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
            headers["Content-Disposition"] = (
                f"attachment; filename=\"{ascii_name}\"; filename*=utf-8''{quote(self.name)}"
            )
        return headers


def open_original(path: Path, sha256: str, size: int) -> OpenedOriginal | None:
    """The file at `path` opened once, when it is a regular file (not a link) of `size` bytes
    with `sha256`; None otherwise (missing, replaced, changed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, or a link (ELOOP)
        return None
    file = os.fdopen(fd, "rb")
    try:
        facts = os.fstat(fd)
        if not stat.S_ISREG(facts.st_mode) or facts.st_size != size:
            file.close()
            return None
        os.set_blocking(fd, True)
        digest = hashlib.sha256()
        while chunk := file.read(CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            file.close()
            return None
        file.seek(0)
        media_type = _media_type(file)
        file.seek(0)
    except OSError:
        file.close()
        return None
    return OpenedOriginal(file, size, media_type, path.name)


def _media_type(file: io.BufferedReader | BinaryIO) -> str:
    """The MIME type of the image format Pillow finds in `file`'s header, else octet-stream."""
    try:
        with Image.open(file) as image:  # reads the header only; the caller's file stays open
            return Image.MIME.get(image.format or "", OCTET_STREAM)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return OCTET_STREAM
