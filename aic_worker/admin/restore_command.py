"""`aic-admin restore ID|PATH... -o DIR`: archived images back as image files, in their old layout.

What to restore, each argument one of: a source id (its current version); an original's
path as the catalog recorded it; a `.aic` file the catalog knows (that version, current or
not); a folder (every source found under it). Each image goes to
`DIR/<its path relative to its watched folder>` with the format's suffix (`2024/a.jpg`
becomes `DIR/2024/a.png`), with its EXIF and ICC profile, and its original's mtime. The
format holds the image's mode: PNG, or TIFF (`.tif`) for CMYK, YCbCr and 32-bit grey;
`--format` forces one (conversions: `aic_worker.codec.image_modes`).

A file is checked against its recorded sha256 before it is decoded, written under a temp
name and linked into place: an existing output is never overwritten (the same image
already there counts as restored). A passthrough version's file holds the original's bytes:
they are written back as they are, under the original's name. When the current version's
file is missing or damaged, the newest intact older version is restored instead, and that
is said. Runs in this process; `.aic` files outside the catalog are for `aic-admin decompress`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog
from aic_worker.catalog.models import ArchiveKind, ArchiveVersion, Source, SourcePath
from aic_worker.catalog.overview import CURRENT, source_rows
from aic_worker.codec.image_modes import FILE_FORMATS, for_file
from aic_worker.config import WorkerConfig, add_device_option
from aic_worker.store import archive

if TYPE_CHECKING:
    from aic_worker.codec_cache import CodecCache

COMMAND = "restore"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="decode archived images back into a folder, in their original layout",
        description="Restore archived images by source id, original path, .aic path or folder, into "
        "DIR in the original relative layout, with EXIF, ICC profile and mtime.",
    )
    p.add_argument(
        "targets", nargs="+", metavar="ID|PATH", help="source ids, original paths, .aic files, folders"
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder to restore into")
    p.add_argument("--format", choices=sorted(FILE_FORMATS),
                   help="image format (default: PNG, or TIFF for modes PNG can't hold: CMYK, YCbCr, I)")
    add_device_option(p)
    p.set_defaults(func=restore)


@dataclass(frozen=True)
class Restoration:
    version: ArchiveVersion
    path: SourcePath | None  # where the original was: layout and mtime


def _resolve(session: Session, target: str) -> list[Restoration] | None:
    """What `target` names; None when the catalog knows nothing by that name."""
    if target.isdigit():
        return [
            Restoration(r.version, r.path)
            for r in source_rows(session, Source.id == int(target))
            if r.version
        ]
    path = str(Path(target).expanduser().resolve())
    version = session.scalars(select(ArchiveVersion).where(ArchiveVersion.path == path)).one_or_none()
    if version is not None:
        return [Restoration(version, next(iter(source_rows(session, Source.id == version.source_id))).path)]
    original = session.scalars(select(SourcePath).where(SourcePath.path == path)).one_or_none()
    if original is not None:
        rows = source_rows(session, Source.id == original.source_id, CURRENT.id.is_not(None))
        return [Restoration(r.version, original) for r in rows]
    under = select(SourcePath).where(SourcePath.path.startswith(path.rstrip("/") + "/", autoescape=True))
    found = {p.source_id: p for p in session.scalars(under.order_by(SourcePath.id.desc()))}
    if not found:
        return None
    rows = source_rows(session, Source.id.in_(found), CURRENT.id.is_not(None))
    return [Restoration(r.version, found[r.source.id]) for r in rows]


def output_path(root: Path, restoration: Restoration, suffix: str | None) -> Path:
    """Where `restoration` goes under `root`; `suffix` None keeps the original's name as it was."""
    if restoration.path is None:
        return root / f"source-{restoration.version.source_id}{suffix or ''}"
    relative = archive.relative_inside(Path(restoration.path.path), Path(restoration.path.folder))
    return root / (relative if suffix is None else relative.with_suffix(suffix))


class Decoder:
    """The codecs restore decodes with, loaded (with torch) at the first `.aic` to decode:
    restoring passthrough versions alone never loads them."""

    def __init__(self, sessions: sessionmaker[Session], device: str) -> None:
        self.sessions = sessions
        self.device = device
        self.codecs: CodecCache | None = None

    def image(self, version: ArchiveVersion, data: bytes) -> Image.Image:
        from aic_worker.codec import AicFormatError
        from aic_worker.codec_cache import CodecCache
        from aic_worker.jobs.errors import PermanentJobError

        if self.codecs is None:
            self.codecs = CodecCache(self.device)
        try:
            return self.codecs.get(self.sessions, version.model_id).decompress(data)
        except (AicFormatError, PermanentJobError) as error:
            raise ValueError(str(error)) from error


class UnreadableVersion(ValueError):
    """A version's file is missing, removed or does not match its recorded sha256."""


def restore(args: argparse.Namespace) -> int:
    root = args.output.expanduser().resolve()
    failed = restored = fell_back = 0
    with open_catalog() as sessions:
        plan: list[Restoration] = []
        with sessions() as session:
            for target in args.targets:
                found = _resolve(session, target)
                if not found:
                    output.error(COMMAND, f"{target}: no archived source by that id, path or folder")
                    failed += 1
                plan.extend(r for r in found or [] if r.version.id not in {p.version.id for p in plan})
        if plan:
            decoder = Decoder(sessions, args.device or WorkerConfig.from_env().device)
            with output.progress() as bar:
                task = bar.add_task("restoring", total=len(plan))
                for item in plan:
                    try:
                        note = _restore_one(sessions, decoder, item, root, args.format)
                        restored += 1
                        fell_back += note is not None
                    except (OSError, ValueError) as error:
                        note = str(error)
                        failed += 1
                    if note:
                        name = item.path.path if item.path else item.version.path
                        bar.console.print(f"aic-admin {COMMAND}: {name}: {note}", highlight=False,
                                          markup=False)
                    bar.advance(task)
    older = f" ({fell_back} from an older version; aic-admin repair remakes the current)" if fell_back else ""
    summary = f"restored {restored} image(s) into {root}{older}; {failed} failed"
    output.stdout().print(summary, highlight=False)
    return output.SOME_FAILED if failed else output.OK


def _restore_one(
    sessions: sessionmaker[Session], decoder: Decoder, item: Restoration, root: Path, fmt: str | None
) -> str | None:
    """Restore `item`; when its version is the current one and its file is missing or damaged,
    the newest intact older version instead. Returns what to tell about a fallback."""
    problems = []
    for version in _versions_to_try(sessions, item.version):
        try:
            data = _read(version)
        except UnreadableVersion as problem:
            problems.append(f"version {version.id}: {problem}")
            continue
        if version.kind is ArchiveKind.PASSTHROUGH:  # the original's bytes, bit for bit
            encoded, suffix = data, None if item.path else _original_suffix(version)
        else:
            image, pil_format, suffix = for_file(decoder.image(version, data), fmt)
            buffer = io.BytesIO()
            extra = {k: image.info[k] for k in ("exif", "icc_profile") if k in image.info}
            image.save(buffer, format=pil_format, **extra)
            encoded = buffer.getvalue()
        _write(output_path(root, item, suffix), encoded, item.path)
        if version is item.version:
            return None
        return (f"{'; '.join(problems)}: restored from version {version.id} of "
                f"{version.created_at:%Y-%m-%d %H:%M} (ratio {version.achieved_ratio:.1f}), "
                "the newest intact one")
    raise ValueError(f"{'; '.join(problems)}: no intact version left to restore from")


def _versions_to_try(sessions: sessionmaker[Session], version: ArchiveVersion) -> list[ArchiveVersion]:
    """`version`, then, if it is the current one, the source's older versions, newest first,
    whose files were not deleted on purpose."""
    if version.superseded_by is not None:  # a version named by its file: that one, or nothing
        return [version]
    with sessions() as session:
        older = session.scalars(
            select(ArchiveVersion)
            .where(
                ArchiveVersion.source_id == version.source_id,
                ArchiveVersion.id != version.id,
                ArchiveVersion.removed_at.is_(None),
            )
            .order_by(ArchiveVersion.created_at.desc(), ArchiveVersion.id.desc())
        ).all()
    return [version, *older]


def _read(version: ArchiveVersion) -> bytes:
    """The version's file, checked against its recorded sha256."""
    if version.removed_at is not None:
        raise UnreadableVersion(f"its file was removed on {version.removed_at:%Y-%m-%d}")
    try:
        return archive.recorded_bytes(version.path, version.sha256)
    except archive.DamagedFileError as error:
        raise UnreadableVersion(str(error)) from None
    except OSError as error:
        raise UnreadableVersion(f"archive file {version.path}: {error.strerror or error}") from None


def _original_suffix(version: ArchiveVersion) -> str:
    """The original's suffix from a passthrough file's name: `a.jpg.orig`, `a.jpg.2.orig` -> `.jpg`."""
    name = re.sub(r"\.\d+$", "", Path(version.path).name.removesuffix(archive.PASSTHROUGH_SUFFIX))
    return Path(name).suffix


def _write(target: Path, encoded: bytes, path: SourcePath | None) -> None:
    """`encoded` at `target`, never over other content, with the original's mtime."""
    staged = archive.stage(target, encoded, job_id=0)  # "job 0": aic-admin's own temp names
    try:
        archive.place(staged, [target], hashlib.sha256(encoded).hexdigest())
    except FileExistsError:
        raise FileExistsError(f"{target} exists with other content: not overwritten") from None
    finally:
        staged.unlink(missing_ok=True)
    if path is not None:
        mtime = path.mtime.timestamp()
        os.utime(target, (mtime, mtime))
