"""The work of each job kind, run by a worker that holds the job's lease.

Compress (DESIGN.md, invariant 2), each step only after the one before it succeeded:
```
 read the original, check its sha256 ─► decode it (PIL) ─► codec.compress(ratio)
   ─► archive.stage: temp name, fsync ─► decode the staged file, PSNR / MS-SSIM
   ─► archive.place: link to the final name ─► commit: archive version + job done
   ─► the folder's policy for the original (keep, move, delete)
```
Recompress writes a new version beside the current one from the original when one is
still on disk; without it, it can only truncate the current file to a higher ratio (same
model), and then measures quality against the current version's decoding. Restore decodes
the current version into a PNG at the job's `output`; verify checks that the current file
still has its recorded sha256 and decodes, and when the original is there, to its PSNR.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, Source, SourcePath
from aic_worker.catalog.sources import current_version, mark_path_removed, record_archive_version
from aic_worker.codec import AicFormatError, Codec
from aic_worker.codec.image_modes import UnsupportedImageError
from aic_worker.codec.quality import ms_ssim, psnr
from aic_worker.codec_cache import CodecCache
from aic_worker.jobs.errors import LeaseLostError, PermanentJobError, in_transaction
from aic_worker.jobs.parameters import CompressParameters
from aic_worker.observe import metrics
from aic_worker.store import archive
from aic_worker.store.policy import Policy, apply_policy

log = logging.getLogger(__name__)
T = TypeVar("T")

# A decoded archive must match its recorded PSNR this closely: the entropy decoder is exact,
# the synthesis transform is float and may round differently on another device.
VERIFY_PSNR_TOLERANCE_DB = 0.5


@dataclass
class JobContext:
    """What a job's work needs from its worker process.

    `lease_lost` is set when the lease was reaped or can no longer be proven held (the
    heartbeat could not renew it in time); `lease_left` says for how many more seconds it
    is proven held (None: no heartbeat, as in tests). `min_psnr`: the quality floor an
    archive must reach before the delete policy may remove its original (None: off).
    """

    sessions: sessionmaker[Session]
    owner: str
    codecs: CodecCache
    db_patience: float
    lease_lost: threading.Event
    lease_left: Callable[[], float] | None = None
    min_psnr: float | None = None

    def db(self, work: Callable[[Session], T]) -> T:
        """`work` in one transaction, waiting out a database outage, but not past the proven lease.

        Waiting longer is pointless: by then the lease may be taken back and the job redone
        elsewhere. Whatever `work` changes is checked against the lease inside the transaction.
        """
        patience = self.db_patience
        if self.lease_left is not None:
            patience = min(patience, max(self.lease_left(), 0.0))
        return in_transaction(self.sessions, work, patience=patience)

    def codec(self, model_id: str) -> Codec:
        return self.codecs.get(self.sessions, model_id)

    def check_lease(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLostError("the job's lease was reaped or could not be renewed")

    def finish(self, job: Job) -> None:
        """Mark a job that wrote no archive version done."""

        def work(session: Session) -> None:
            if not lease.complete(session, job.id, self.owner):
                raise LeaseLostError(f"job {job.id} is no longer ours")

        self.db(work)


@dataclass(frozen=True)
class Original:
    path: Path
    data: bytes


@dataclass(frozen=True)
class SourceFacts:
    """What the catalog says of a source, read in one short transaction."""

    sha256: str
    paths: tuple[Path, ...]  # where its content was last seen, not removed
    current: ArchiveVersion | None


def _source_facts(ctx: JobContext, source_id: int) -> SourceFacts:
    def work(session: Session) -> SourceFacts:
        source = session.get(Source, source_id)
        if source is None:
            raise PermanentJobError(f"source {source_id} is not in the catalog")
        paths = session.scalars(
            select(SourcePath.path).where(SourcePath.source_id == source_id, SourcePath.removed_at.is_(None))
        )
        return SourceFacts(source.sha256, tuple(Path(p) for p in paths), current_version(session, source_id))

    return ctx.db(work)


def _read_if_same(path: Path, sha256: str) -> bytes | None:
    """The bytes at `path` if it is a regular file (not a link) holding content `sha256`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        data = file.read()
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def find_original(facts: SourceFacts, preferred: Path | None = None) -> Original | None:
    """The original's bytes from `preferred`, else from any other path that still holds them."""
    for path in dict.fromkeys([*([preferred] if preferred else []), *facts.paths]):
        data = _read_if_same(path, facts.sha256)
        if data is not None:
            return Original(path, data)
    return None


def open_image(data: bytes, name: Path) -> Image.Image:
    """A fully decoded PIL image; hostile or broken input becomes a PermanentJobError."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError as error:
        reason = f"{name}: refused as a decompression bomb: {error}"
        raise PermanentJobError(reason, bad_input=True) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise PermanentJobError(f"{name}: not a readable image: {error}", bad_input=True) from error
    return image


def encode(codec: Codec, image: Image.Image, ratio: float, name: Path) -> bytes:
    try:
        with metrics.ENCODE_SECONDS.time():
            return codec.compress(image, ratio)
    except ValueError as error:
        raise encoding_error(error, name) from error


def encoding_error(error: Exception, name: Path) -> Exception:
    """What the codec's refusal to encode `name` means for its job (any other error stays itself)."""
    if isinstance(error, UnsupportedImageError):
        return PermanentJobError(f"{name}: {error}", bad_input=True)
    if isinstance(error, ValueError):
        return PermanentJobError(f"{name}: {error}")
    return error


def rgb_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def measure(codec: Codec, staged: Path, reference: np.ndarray) -> tuple[float, float]:
    """Decode the staged file from disk and measure it against `reference`: (PSNR, MS-SSIM)."""
    try:
        decoded = rgb_of(codec.decompress(staged.read_bytes()))
    except AicFormatError as error:
        raise PermanentJobError(f"the written archive file does not decode: {error}") from error
    if decoded.shape != reference.shape:
        raise PermanentJobError(f"the archive decodes to {decoded.shape}, the original is {reference.shape}")
    return psnr(reference, decoded), ms_ssim(reference, decoded)


def _recorded(session: Session, path: Path) -> bool:
    return session.scalar(select(ArchiveVersion.id).where(ArchiveVersion.path == str(path))) is not None


def _path_recorded(ctx: JobContext, path: Path) -> bool:
    return ctx.db(lambda session: _recorded(session, path))


def _holds(path: Path, sha256: str) -> bool:
    return path.is_file() and not path.is_symlink() and archive.file_sha256(path) == sha256


def _place_again(final: Path, data: bytes, sha256: str, job_id: int) -> None:
    """Put `data` back at `final`, which a lease's loser removed after this attempt placed it."""
    staged = archive.stage(final, data, job_id)
    try:
        archive.place(staged, [final], sha256)  # FileExistsError: `final` now holds other bytes
    finally:
        staged.unlink(missing_ok=True)


def check_quality(quality: tuple[float, float], floor: float | None, original: Path) -> None:
    """Refuse an archive below the PSNR `floor` (None: no floor): its original must not be deleted."""
    if floor is not None and quality[0] < floor:
        raise PermanentJobError(
            f"{original}: the archive measures PSNR {quality[0]:.2f} dB, below the quality floor of "
            f"{floor:g} dB that the delete policy requires; nothing archived, the original kept"
        )


def write_version(
    ctx: JobContext,
    job: Job,
    codec: Codec,
    data: bytes,
    reference: np.ndarray,
    names: list[Path],
    check: Callable[[tuple[float, float]], None] = lambda _quality: None,
) -> ArchiveVersion:
    """Stage, verify, place and commit `data` as the source's new current archive version.

    `check` sees the measured (PSNR, MS-SSIM) before anything is placed, and may refuse.

    Who may remove a placed file: another worker can re-encode the same bytes and adopt this
    attempt's placed, uncommitted file (archive.place). So the commit and the removal by a
    lease's loser both run under the job's row lock and the path's lock (lease.hold,
    lease.lock_archive_path), in one transaction each:
    - the winner's commit checks, under the locks, that the file still holds its bytes
      (putting them back if a loser removed them) before it records the path;
    - a loser removes a file only if it placed it and, under the locks, no row records the
      path; whoever commits later finds the file and puts it back.
    A crash, or a database away for longer than the lease, leaves the placed file: the next
    attempt adopts it (same bytes) or takes the next name.
    """
    directory = names[0].parent
    for stale in archive.remove_stale_temps(directory, job.id):
        log.info("job %s: removed %s left by an interrupted attempt", job.id, stale)
    ctx.check_lease()
    staged = archive.stage(names[0], data, job.id)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        quality = measure(codec, staged, reference)
        check(quality)
        ctx.check_lease()
        final, created = archive.place(staged, names, sha256, lambda path: _path_recorded(ctx, path))
    finally:
        staged.unlink(missing_ok=True)
    height, width = reference.shape[:2]

    def commit(session: Session) -> ArchiveVersion:
        done = session.scalars(
            select(ArchiveVersion).where(ArchiveVersion.path == str(final), ArchiveVersion.sha256 == sha256)
        ).one_or_none()
        if done is not None and session.get(Job, job.id).state is JobState.DONE:
            return done  # an earlier try committed, and only its acknowledgement was lost
        held = lease.hold(session, job.id, ctx.owner)
        lease.lock_archive_path(session, str(final))
        if not held:
            if created and not _recorded(session, final):
                final.unlink(missing_ok=True)
                archive.fsync_directory(final.parent)
            raise LeaseLostError(f"job {job.id} is no longer ours")
        if not _holds(final, sha256):
            log.warning("job %s: %s was removed by a worker that lost this job; placing it again",
                        job.id, final)
            _place_again(final, data, sha256, job.id)
        version = record_archive_version(
            session,
            source_id=job.source_id,
            path=str(final),
            bytes=len(data),
            sha256=sha256,
            target_ratio=float(job.target_ratio),
            achieved_ratio=width * height * 3 / len(data),
            model_id=codec.model_id,
            psnr=quality[0],
            ms_ssim=quality[1],
        )
        if not lease.complete(session, job.id, ctx.owner):
            raise LeaseLostError(f"job {job.id} is no longer ours")
        return version

    return ctx.db(commit)


@dataclass(frozen=True)
class CompressInput:
    """A compress job read and checked, ready for the codec: what batch.py gathers."""

    params: CompressParameters
    sha256: str
    original: Original
    image: Image.Image
    codec: Codec


def read_compress(ctx: JobContext, job: Job) -> CompressInput:
    """A compress job's parameters, its original (content checked) decoded, and its codec."""
    try:
        params = CompressParameters.from_json(job.parameters)
    except ValueError as error:
        raise PermanentJobError(str(error)) from error
    facts = _source_facts(ctx, job.source_id)
    original = find_original(facts, params.path)
    if original is None:
        raise PermanentJobError(f"{params.path}: the original is gone or its content changed")
    image = open_image(original.data, original.path)
    return CompressInput(params, facts.sha256, original, image, ctx.codec(job.model_id))


def write_compress(ctx: JobContext, job: Job, read: CompressInput, data: bytes) -> None:
    """The encoded `data` of a compress job through invariant 2: stage, verify, place, commit, policy."""
    params, original = read.params, read.original
    preferred = archive.archive_path(params.archive_root, params.folder, params.path)
    names = list(archive.candidates(preferred))
    floor = ctx.min_psnr if params.policy is Policy.DELETE else None
    version = write_version(ctx, job, read.codec, data, rgb_of(read.image), names,
                            partial(check_quality, floor=floor, original=original.path))
    metrics.count_io(job.kind, read=len(original.data), written=len(data))
    log.info("job %s: %s -> %s (ratio %.1f, PSNR %.2f dB)", job.id, original.path, version.path,
             version.achieved_ratio, version.psnr)
    if original.path == params.path and params.policy is not Policy.KEEP:
        _apply_policy(ctx, params, read.sha256)


def compress(ctx: JobContext, job: Job) -> None:
    read = read_compress(ctx, job)
    data = encode(read.codec, read.image, float(job.target_ratio), read.original.path)
    write_compress(ctx, job, read, data)


def _apply_policy(ctx: JobContext, params: CompressParameters, sha256: str) -> None:
    """Keep, move or delete the original, if it still holds the content just archived."""
    if _read_if_same(params.path, sha256) is None:
        log.warning("%s changed after it was archived: left in place", params.path)
        return
    moved_to = apply_policy(params.policy, params.path, params.folder, params.done_dir)
    ctx.db(lambda session: mark_path_removed(session, str(params.path)))
    log.info("%s: %s", params.path, f"moved to {moved_to}" if moved_to else "deleted")


def _current(facts: SourceFacts, job: Job) -> ArchiveVersion:
    if facts.current is None:
        raise PermanentJobError(f"source {job.source_id} has no archive version")
    return facts.current


def _read_archive(version: ArchiveVersion) -> bytes:
    """The current version's bytes, if they are still the ones the catalog recorded."""
    try:
        data = Path(version.path).read_bytes()
    except FileNotFoundError as error:
        raise PermanentJobError(f"archive file {version.path} is missing") from error
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise PermanentJobError(f"archive file {version.path} does not match its recorded sha256")
    return data


def recompress(ctx: JobContext, job: Job) -> None:
    facts = _source_facts(ctx, job.source_id)
    current = _current(facts, job)
    if job.target_ratio is None:
        raise PermanentJobError("a recompress job needs a target ratio")
    ratio = float(job.target_ratio)
    model_id = job.model_id or current.model_id
    codec = ctx.codec(model_id)
    original = find_original(facts)
    if original is not None:
        image = open_image(original.data, original.path)
        data, reference = encode(codec, image, ratio, original.path), rgb_of(image)
        read = len(original.data)
    elif model_id == current.model_id and ratio >= current.achieved_ratio:
        old = _read_archive(current)
        try:
            data, reference = codec.truncate(old, ratio), rgb_of(codec.decompress(old))
        except ValueError as error:
            raise PermanentJobError(f"{current.path}: {error}") from error
        read = len(old)
    else:
        raise PermanentJobError(
            f"the original is gone: only truncation of {current.path} to a ratio of at least "
            f"{current.achieved_ratio:.2f} with its own model is possible"
        )
    names = list(archive.candidates(Path(current.path)))
    version = write_version(ctx, job, codec, data, reference, names)
    metrics.count_io(job.kind, read=read, written=len(data))
    log.info("job %s: recompressed to %s (ratio %.1f)", job.id, version.path, version.achieved_ratio)


def restore(ctx: JobContext, job: Job) -> None:
    output = job.parameters.get("output")
    if not output:
        raise PermanentJobError("a restore job needs an `output` path in its parameters")
    current = _current(_source_facts(ctx, job.source_id), job)
    data = _read_archive(current)
    codec = ctx.codec(current.model_id)
    try:
        image = codec.decompress(data)
    except AicFormatError as error:
        raise PermanentJobError(f"{current.path}: {error}") from error
    buffer = io.BytesIO()
    extra = {k: image.info[k] for k in ("exif", "icc_profile") if k in image.info}
    image.save(buffer, format="PNG", **extra)
    png = buffer.getvalue()
    target = Path(output)
    staged = archive.stage(target, png, job.id)
    try:
        archive.place(staged, [target], hashlib.sha256(png).hexdigest())
    except FileExistsError as error:
        raise PermanentJobError(f"{target} exists with other content: not overwritten") from error
    finally:
        staged.unlink(missing_ok=True)
    ctx.finish(job)
    metrics.count_io(job.kind, read=len(data), written=len(png))
    log.info("job %s: restored %s to %s", job.id, current.path, target)


def verify(ctx: JobContext, job: Job) -> None:
    facts = _source_facts(ctx, job.source_id)
    current = _current(facts, job)
    data = _read_archive(current)
    codec = ctx.codec(current.model_id)
    try:
        decoded = rgb_of(codec.decompress(data))
    except AicFormatError as error:
        raise PermanentJobError(f"{current.path}: {error}") from error
    original = find_original(facts)
    if original is not None:
        measured = psnr(rgb_of(open_image(original.data, original.path)), decoded)
        if abs(measured - current.psnr) > VERIFY_PSNR_TOLERANCE_DB:
            raise PermanentJobError(
                f"{current.path} decodes to PSNR {measured:.2f} dB, recorded {current.psnr:.2f} dB"
            )
    ctx.finish(job)
    metrics.count_io(job.kind, read=len(data))
    log.info("job %s: %s verified", job.id, current.path)


RUNNERS: dict[JobKind, Callable[[JobContext, Job], None]] = {
    JobKind.COMPRESS: compress,
    JobKind.RECOMPRESS: recompress,
    JobKind.RESTORE: restore,
    JobKind.VERIFY: verify,
}
