"""`aic-admin restore ID|PATH... -o DIR`: archived images back as image files, in their old layout.

What to restore, each argument one of: a source id (its current version); an original's
path as the catalog recorded it; a `.aic` file the catalog knows (that version, current or
not); a folder (every source found under it). Each image goes to
`DIR/<its path relative to its watched folder>` with the format's suffix (`2024/a.jpg`
becomes `DIR/2024/a.png`), with its EXIF and ICC profile, and its original's mtime.

A file is checked against its recorded sha256 before it is decoded, written under a temp
name and linked into place: an existing output is never overwritten (the same image
already there counts as restored). Runs in this process; `.aic` files outside the catalog
are for `aic-admin decompress`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog
from aic_worker.catalog.models import ArchiveVersion, Source, SourcePath
from aic_worker.catalog.overview import CURRENT, source_rows
from aic_worker.config import WorkerConfig, add_device_option
from aic_worker.store import archive

if TYPE_CHECKING:
    from aic_worker.codec_cache import CodecCache

FORMATS = {"png": ("PNG", ".png"), "tiff": ("TIFF", ".tif")}
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
    p.add_argument("--format", choices=sorted(FORMATS), default="png", help="image format (default png)")
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


def output_path(root: Path, restoration: Restoration, suffix: str) -> Path:
    if restoration.path is None:
        return root / f"source-{restoration.version.source_id}{suffix}"
    relative = archive.relative_inside(Path(restoration.path.path), Path(restoration.path.folder))
    return root / relative.with_suffix(suffix)


def restore(args: argparse.Namespace) -> int:
    root = args.output.expanduser().resolve()
    failed = restored = 0
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
            from aic_worker.codec_cache import CodecCache  # torch, once there is something to decode

            codecs = CodecCache(args.device or WorkerConfig.from_env().device)
            with output.progress() as bar:
                task = bar.add_task("restoring", total=len(plan))
                for item in plan:
                    try:
                        _restore_one(sessions, codecs, item, root, args.format)
                        restored += 1
                    except (OSError, ValueError) as error:
                        bar.console.print(
                            f"aic-admin {COMMAND}: {item.version.path}: {error}", highlight=False
                        )
                        failed += 1
                    bar.advance(task)
    output.stdout().print(f"restored {restored} image(s) into {root}; {failed} failed", highlight=False)
    return output.SOME_FAILED if failed else output.OK


def _restore_one(
    sessions: sessionmaker[Session], codecs: CodecCache, item: Restoration, root: Path, fmt: str
) -> None:
    from aic_worker.codec import AicFormatError
    from aic_worker.jobs.errors import PermanentJobError

    version = item.version
    data = Path(version.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise ValueError("the archive file does not match its recorded sha256 (run `aic-admin verify`)")
    try:
        image = codecs.get(sessions, version.model_id).decompress(data)
    except (AicFormatError, PermanentJobError) as error:
        raise ValueError(str(error)) from error
    pil_format, suffix = FORMATS[fmt]
    buffer = io.BytesIO()
    extra = {k: image.info[k] for k in ("exif", "icc_profile") if k in image.info}
    image.save(buffer, format=pil_format, **extra)
    encoded = buffer.getvalue()
    target = output_path(root, item, suffix)
    staged = archive.stage(target, encoded, job_id=0)  # "job 0": aic-admin's own temp names
    try:
        archive.place(staged, [target], hashlib.sha256(encoded).hexdigest())
    except FileExistsError:
        raise FileExistsError(f"{target} exists with other content: not overwritten") from None
    finally:
        staged.unlink(missing_ok=True)
    if item.path is not None:
        mtime = item.path.mtime.timestamp()
        os.utime(target, (mtime, mtime))
