"""Archived images as PNG for the browser: decoded once, kept on disk, the cache bounded.

```
 GET preview.png ─► cache hit (AIC_HOME/previews/<sha256 of the .aic>-<width>.png) ─► bytes
                 └► miss ─► .aic bytes ─► sha256 = catalog's? ─► Codec.check + decode ─► scale
                            ─► private temp file, renamed into place ─► oldest evicted over the bound
```
A preview is named by the archive file's sha256, so a file changed on disk or a new
version never shows a stale picture. The codec (and torch) loads on the first miss, in
this process, for the version's own model (codec_cache.py); decodes take turns under a lock,
so a page of thumbnails can't run a dozen decoders at once. Widths are rounded up to SIZES
(160, 320, 640, 1280, else full), and the cache is looked at again once a request's turn
comes, so each version is decoded at most once per size. Cache files are private like
every file AIC writes (private_files.py): they show people's photos.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog.models import ArchiveKind, ArchiveVersion
from aic_worker.private_files import create_private_file, make_folders

if TYPE_CHECKING:
    from aic_worker.codec_cache import CodecCache

MIN_WIDTH, MAX_WIDTH = 16, 4096
# The widths previews are made at: a width asked for is rounded up to one of these, above the
# last it is the full image. Every width its own cache entry let 4,000 requests per image each
# cost a full decode (0.4.0's first version); now a version is decoded at most once per size.
SIZES = (160, 320, 640, 1280)


def preview_size(width: int | None) -> int | None:
    """`width` rounded up to one of SIZES; None (full size) above them or when not given."""
    if width is None:
        return None
    return next((size for size in SIZES if width <= size), None)


class PreviewError(Exception):
    """The archive file can't be shown: missing, altered since it was written, or not decodable."""


class PreviewCache:
    def __init__(self, folder: Path, max_bytes: int, sessions: sessionmaker[Session], device: str) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.sessions = sessions
        self.device = device
        self._codecs: CodecCache | None = None
        self._decoding = threading.Lock()

    def png(self, version: ArchiveVersion, width: int | None = None) -> bytes:
        """The version's image as PNG: `width` rounded up to SIZES (aspect kept, never enlarged), or full."""
        if width is not None and not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be between {MIN_WIDTH} and {MAX_WIDTH}")
        width = preview_size(width)
        cached = self.folder / f"{version.sha256}-{width or 'full'}.png"
        data = self._cached(cached)
        if data is not None:
            return data
        # Decoded, scaled and kept in one turn: a request that waited for it finds the file.
        with self._decoding:
            data = self._cached(cached)  # made while this request waited its turn: not decoded again
            if data is not None:
                return data
            image = self._decode(version)
            if width is not None and width < image.width:
                size = (width, max(1, round(image.height * width / image.width)))
                image = image.resize(size, Image.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
            self._keep(cached, data)
        return data

    def _cached(self, cached: Path) -> bytes | None:
        try:
            data = cached.read_bytes()
            os.utime(cached)  # recently used: evicted last
            return data
        except FileNotFoundError:
            return None

    def _decode(self, version: ArchiveVersion) -> Image.Image:
        try:
            data = Path(version.path).read_bytes()
        except OSError as error:
            raise PreviewError(f"{version.path}: {error.strerror or error}") from error
        if hashlib.sha256(data).hexdigest() != version.sha256:
            raise PreviewError(f"{version.path} does not match its recorded sha256 (run `aic-admin verify`)")
        if version.kind is ArchiveKind.PASSTHROUGH:  # the original's own bytes
            try:
                with Image.open(io.BytesIO(data)) as image:
                    return image.convert("RGBA" if "A" in image.getbands() else "RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                raise PreviewError(f"{version.path}: {error}") from error
        from aic_worker.codec import AicFormatError
        from aic_worker.jobs.errors import PermanentJobError

        if self._codecs is None:
            from aic_worker.codec_cache import CodecCache  # torch: on the first preview only

            self._codecs = CodecCache(self.device)
        try:
            return self._codecs.get(self.sessions, version.model_id).decompress(data)  # checks it first
        except (AicFormatError, PermanentJobError) as error:
            raise PreviewError(f"{version.path}: {error}") from error

    def _keep(self, cached: Path, data: bytes) -> None:
        """Write a preview under a private temp name, rename it into place, then trim the cache."""
        if len(data) > self.max_bytes:
            return
        make_folders(self.folder)
        temp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = create_private_file(temp)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temp, cached)
        finally:
            temp.unlink(missing_ok=True)
        self._trim()

    def _trim(self) -> None:
        """Least recently used previews out until the cache is within its bound."""
        entries = []
        for path in self.folder.glob("*.png"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # trimmed by another request meanwhile
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
