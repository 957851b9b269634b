"""The work of each job kind, run by a worker that holds the job's lease.

Compress (DESIGN.md, invariant 2), each step only after the one before it succeeded:
```
 read the original, check its sha256 ─► decode it (PIL) ─► codec.compress(ratio)
   ─► archive.stage: temp name, fsync ─► decode the staged file, PSNR / MS-SSIM
   ─► archive.place: link to the final name ─► commit: archive version + job done
   ─► the folder's policy for the original (keep, move, delete)
```
Never bigger: when the `.aic` is not smaller than the original file, the original's bytes
are stored instead, as a passthrough version (`a.jpg.orig`, checked by its sha256, no PSNR:
bit-exact), or, if the folder says `if_bigger: leave`, nothing is stored and the job is
quarantined with both sizes as its reason. Under the delete or move policy a `.aic` must
also reach a PSNR floor (the folder's `min_psnr`, else the worker's AIC_MIN_PSNR) or the
job is quarantined, nothing stored and the original left where it was.

Recompress writes a new version beside the current one, encoded from the original when it
is still on disk (sha256 checked), else from the newest intact stored version, decoded
(a passthrough's bytes are the original's); quality is then measured against that version
and `reference_version_id` names it. `method: truncate` cuts the current `.aic` down
instead (no encoder, same model, 2–6 dB worse at 16x → 64x). A repair is a recompress at
the damaged version's own ratio that first checks it again (a stale mark is only cleared)
and then skips it as a starting point. Compress and encoding
recompress jobs are batched (batch.py): read (`read_compress`, `read_recompress`), encode,
write.

Versions kept: when a new version is committed, the superseded versions beyond the
source's `keep_versions` (default 1: only the current one; the most any of its jobs asked
for) are marked removed in that same transaction, under the job's lease, damaged ones
first and not counted (store/retention.py: the kept files are hashed just before it, and
only a version or file changed since is hashed inside), and their files deleted after it. A crash in
between leaves a marked file on disk, never a missing current one; `aic-admin prune`
deletes it.

Restore decodes the current version into a PNG at the job's `output` (a passthrough's
bytes are copied); verify checks that the current file still has its recorded sha256 and,
for a `.aic`, decodes, and when quality was measured against the original and it is there,
to its PSNR. A file that fails is marked damaged (damaged_at); one that passes is unmarked.
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
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.models import (
    ArchiveKind,
    ArchiveVersion,
    Job,
    JobKind,
    JobState,
    Source,
    SourcePath,
    utcnow,
)
from aic_worker.catalog.sources import mark_path_removed, record_archive_version
from aic_worker.codec import AicFormatError, Codec
from aic_worker.codec.image_modes import UnsupportedImageError, for_file
from aic_worker.codec.quality import Pixels, measure, pixels_of, psnr
from aic_worker.codec_cache import CodecCache
from aic_worker.jobs.errors import DamagedArchiveError, LeaseLostError, PermanentJobError, in_transaction
from aic_worker.jobs.parameters import (
    CompressParameters,
    IfBigger,
    Method,
    RecompressParameters,
)
from aic_worker.observe import metrics
from aic_worker.store import archive, retention
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
    is proven held (None: no heartbeat, as in tests). `min_psnr`: the worker's quality floor
    (AIC_MIN_PSNR) an archive must reach before the delete or move policy may take its original
    out of the folder (None: off), where the job's folder names none of its own.
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
            owner = self.owner  # completed_by: a retry after a commit whose answer was lost
            if not (lease.complete(session, job.id, owner) or lease.completed_by(session, job.id, owner)):
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
    size: int  # the original's bytes
    paths: tuple[Path, ...]  # where its content was last seen, not removed
    kept: tuple[ArchiveVersion, ...]  # versions whose files were not removed, newest first

    @property
    def current(self) -> ArchiveVersion | None:
        return next((v for v in self.kept if v.superseded_by is None), None)


def _source_facts(ctx: JobContext, source_id: int) -> SourceFacts:
    def work(session: Session) -> SourceFacts:
        source = session.get(Source, source_id)
        if source is None:
            raise PermanentJobError(f"source {source_id} is not in the catalog")
        paths = session.scalars(
            select(SourcePath.path).where(SourcePath.source_id == source_id, SourcePath.removed_at.is_(None))
        )
        kept = session.scalars(
            select(ArchiveVersion)
            .where(ArchiveVersion.source_id == source_id, ArchiveVersion.removed_at.is_(None))
            .order_by(ArchiveVersion.id.desc())
        )
        return SourceFacts(source.sha256, source.size, tuple(Path(p) for p in paths), tuple(kept))

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




def decoded_pixels(codec: Codec, data: bytes, name: str | Path) -> Pixels:
    """A `.aic` file's decoding, as quality is measured on it; a file that won't decode is damaged."""
    try:
        return pixels_of(codec.decompress(data))
    except AicFormatError as error:
        raise DamagedArchiveError(f"{name}: does not decode: {error}") from error


def measure_staged(codec: Codec, staged: Path, reference: Pixels) -> tuple[float, float]:
    """Decode the staged file from disk and measure it against `reference`: (PSNR, MS-SSIM)."""
    try:
        decoded = pixels_of(codec.decompress(staged.read_bytes()))
    except AicFormatError as error:
        raise PermanentJobError(f"the written archive file does not decode: {error}") from error
    if decoded.values.shape != reference.values.shape:
        raise PermanentJobError(
            f"the archive decodes to {decoded.values.shape}, its reference is {reference.values.shape}"
        )
    return measure(reference, decoded)


Quality = tuple[float | None, float | None]  # (PSNR, MS-SSIM); None for a passthrough: bit-exact


@dataclass(frozen=True)
class NewVersion:
    """A file to store as a source's next version, and how its staged copy is checked.

    `check` gets the staged file on disk and returns its quality, or raises to refuse it.
    """

    data: bytes
    kind: ArchiveKind
    pixels: int  # W·H of the image, for the achieved ratio (W·H·3 / bytes)
    model_id: str
    names: list[Path]  # where it may go, first free wins (archive.candidates)
    check: Callable[[Path], Quality]
    reference_version_id: int | None = None  # quality measured against this version, not the original


def aic_version(
    codec: Codec, data: bytes, reference: Pixels, image: Image.Image, names: list[Path],
    reference_version_id: int | None = None, floor: Callable[[tuple[float, float]], None] = lambda _q: None,
) -> NewVersion:
    """A `.aic` file, checked by decoding it from disk and measuring it against `reference`."""

    def check(staged: Path) -> Quality:
        quality = measure_staged(codec, staged, reference)
        floor(quality)
        return quality

    return NewVersion(data, ArchiveKind.AIC, image.width * image.height, codec.model_id, names, check,
                      reference_version_id)


def passthrough_version(
    original: bytes, sha256: str, image: Image.Image, model_id: str, preferred: Path
) -> NewVersion:
    """The original's bytes as a version, checked by the sha256 of the staged file on disk."""

    def check(staged: Path) -> Quality:
        if archive.file_sha256(staged) != sha256:
            raise PermanentJobError(f"{staged}: the written copy of the original does not match its sha256")
        return None, None

    names = list(archive.candidates(archive.with_suffix(preferred, archive.PASSTHROUGH_SUFFIX)))
    return NewVersion(original, ArchiveKind.PASSTHROUGH, image.width * image.height, model_id, names, check)


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


@dataclass(frozen=True)
class QualityFloor:
    """The PSNR an archive must reach before its job's policy removes the original from the folder.

    `db` None: no floor. `source` says whose it is, for the reason of a job below it.
    """

    db: float | None
    source: str
    policy: Policy


def quality_floor(params: CompressParameters, worker_floor: float | None) -> QualityFloor:
    """The folder's floor (`min_psnr`, 0: off) when its job carries one, else the worker's AIC_MIN_PSNR.

    Only delete and move take the original out of the folder; move leaves AIC no path to it
    (recompress and repair can't encode from it), so since 0.4.0 the floor guards it too.
    """
    if params.policy is Policy.KEEP:
        return QualityFloor(None, "", params.policy)
    if params.min_psnr is not None:
        return QualityFloor(params.min_psnr or None, "the folder's min_psnr", params.policy)
    return QualityFloor(worker_floor, "the worker's AIC_MIN_PSNR", params.policy)


def check_quality(quality: tuple[float, float], floor: QualityFloor, original: Path) -> None:
    """Refuse an archive below the PSNR floor: the policy must not take its original out of the folder."""
    if floor.db is not None and quality[0] < floor.db:
        raise PermanentJobError(
            f"{original}: the archive measures PSNR {quality[0]:.2f} dB, below the quality floor of "
            f"{floor.db:g} dB ({floor.source}) that the {floor.policy.value} policy requires; nothing "
            "archived, the original kept"
        )


def write_version(
    ctx: JobContext, job: Job, new: NewVersion, target_ratio: float, keep: int | None
) -> ArchiveVersion:
    """Stage, check, place and commit `new` as the source's current version; retire old ones.

    Who may remove a placed file: another worker can re-encode the same bytes and adopt this
    attempt's placed, uncommitted file (archive.place). So the commit and the removal by a
    lease's loser both run under the job's row lock and the path's lock (lease.hold,
    lease.lock_archive_path), in one transaction each:
    - the winner's commit checks, under the locks, that the file still holds its bytes
      (putting them back if a loser removed them) before it records the path;
    - a loser removes a file only if it placed it and, under the locks, no row records the
      path; whoever commits later finds the file and puts it back.
    A crash, or a database away for longer than the lease, leaves the placed file: the next
    attempt adopts it (same bytes) or takes the next name. Superseded versions beyond `keep`
    (None: the source's, retention.source_keep_versions) are marked removed by the commit
    that holds the lease, damaged ones first (retention.to_retire), and only then deleted: a
    worker that lost its lease commits nothing and so removes no old version's file.
    """
    data, names = new.data, new.names
    for stale in archive.remove_stale_temps(names[0].parent, job.id):
        log.info("job %s: removed %s left by an interrupted attempt", job.id, stale)
    ctx.check_lease()
    staged = archive.stage(names[0], data, job.id)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        quality = new.check(staged)
        ctx.check_lease()
        final, created = archive.place(staged, names, sha256, lambda path: _path_recorded(ctx, path))
    finally:
        staged.unlink(missing_ok=True)

    kept = retention.CheckedFiles(ctx.db(lambda session: retention.kept_files(session, [job.source_id])))

    def commit(session: Session) -> tuple[ArchiveVersion, list[retention.Retired]]:
        if lease.completed_by(session, job.id, ctx.owner):  # an earlier try committed; its answer was lost
            return session.scalars(select(ArchiveVersion).where(ArchiveVersion.path == str(final))).one(), []
        if session.get(Job, job.id).state is JobState.DONE:  # by another worker, however often we tried
            raise LeaseLostError(f"job {job.id} was committed by the worker that took it over")
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
            target_ratio=target_ratio,
            achieved_ratio=new.pixels * 3 / len(data),
            model_id=new.model_id,
            psnr=quality[0],  # type: ignore[arg-type]  # NULL for a passthrough (revision 0003)
            ms_ssim=quality[1],  # type: ignore[arg-type]
        )
        version.kind = new.kind
        version.reference_version_id = new.reference_version_id
        retired = retention.retire_superseded(  # the new file was just checked: not hashed again
            session, job.source_id, keep, lambda v: v is version or kept(v)
        )
        if not lease.complete(session, job.id, ctx.owner):
            raise LeaseLostError(f"job {job.id} is no longer ours")
        return version, retired

    version, retired = ctx.db(commit)
    freed = retention.remove_retired(retired)
    if freed:
        log.info("job %s: %s bytes of superseded versions freed", job.id, freed)
    return version


@dataclass(frozen=True)
class Encoding:
    """A job read and checked, ready for the codec: what batch.py gathers across jobs.

    `write` takes the encoded bytes (codec.compress(image, ratio)) and finishes the job.
    """

    codec: Codec
    image: Image.Image
    ratio: float
    name: Path  # what error messages call the image
    write: Callable[[bytes], None]


def read_compress(ctx: JobContext, job: Job) -> Encoding:
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
    codec = ctx.codec(job.model_id)
    write = partial(write_compress, ctx, job, params, facts.sha256, original, image, codec)
    return Encoding(codec, image, float(job.target_ratio), original.path, write)


def _too_big(data: bytes, original: bytes, ratio: float, name: Path) -> str:
    return (
        f"{name}: a .aic at ratio {ratio:g} is {len(data):,} bytes, not smaller than the original's "
        f"{len(original):,}"
    )


def write_compress(
    ctx: JobContext, job: Job, params: CompressParameters, sha256: str, original: Original,
    image: Image.Image, codec: Codec, data: bytes,
) -> None:
    """The encoded `data` of a compress job through invariant 2: stage, verify, place, commit, policy.

    Never bigger: a `.aic` not smaller than the original is replaced by a passthrough version
    (or nothing, the job quarantined, when the folder says `if_bigger: leave`).
    """
    preferred = archive.archive_path(params.archive_root, params.folder, params.path)
    ratio = float(job.target_ratio)
    if len(data) >= len(original.data):
        reason = _too_big(data, original.data, ratio, original.path)
        if params.if_bigger is IfBigger.LEAVE:
            raise PermanentJobError(f"{reason}: left alone, as its folder's if_bigger setting says")
        log.info("job %s: %s; its bytes are stored as they are", job.id, reason)
        new = passthrough_version(original.data, sha256, image, codec.model_id, preferred)
    else:
        floor = quality_floor(params, ctx.min_psnr)
        new = aic_version(codec, data, pixels_of(image), image, list(archive.candidates(preferred)),
                          floor=partial(check_quality, floor=floor, original=original.path))
    version = write_version(ctx, job, new, ratio, None)  # params.keep_versions counts in the source's
    metrics.count_io(job.kind, read=len(original.data), written=len(new.data))
    log.info("job %s: %s -> %s (%s, ratio %.1f, PSNR %s)", job.id, original.path, version.path,
             version.kind.value, version.achieved_ratio,
             "bit-exact" if version.psnr is None else f"{version.psnr:.2f} dB")
    if original.path == params.path and params.policy is not Policy.KEEP:
        _apply_policy(ctx, params, sha256)


def run_encoding(encoding: Encoding | None) -> None:
    """One job's encoding on its own (a batch of one): encode, then write."""
    if encoding is not None:
        encoding.write(encode(encoding.codec, encoding.image, encoding.ratio, encoding.name))


def compress(ctx: JobContext, job: Job) -> None:
    run_encoding(read_compress(ctx, job))


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


def read_archive(version: ArchiveVersion) -> bytes:
    """A version's bytes, if they are still the ones the catalog recorded (else it is damaged)."""
    try:
        return archive.recorded_bytes(version.path, version.sha256)
    except archive.DamagedFileError as error:
        raise DamagedArchiveError(str(error)) from error


@dataclass(frozen=True)
class Start:
    """What a recompress encodes from: the original's bytes, or a stored version's decoding."""

    image: Image.Image
    name: Path
    original: bytes | None  # the original's bytes (from its path or a passthrough version)
    version: ArchiveVersion | None  # the .aic version decoded (quality is measured against it)
    bytes_read: int


def _start(ctx: JobContext, facts: SourceFacts, *, skip: int | None) -> Start:
    """The original if it is still there, else the newest intact version (not version `skip`):
    one whose file holds its recorded bytes and decodes, marked damaged or not."""
    original = find_original(facts)
    if original is not None:
        return Start(open_image(original.data, original.path), original.path, original.data, None,
                     len(original.data))
    for version in facts.kept:
        if version.id == skip:  # a damage mark alone is not skipped: it may be stale, the sha256 decides
            continue
        try:
            data = read_archive(version)
            if version.kind is ArchiveKind.PASSTHROUGH:
                return Start(open_image(data, Path(version.path)), Path(version.path), data, None, len(data))
            image = ctx.codec(version.model_id).decompress(data)
        except (DamagedArchiveError, AicFormatError) as error:
            log.warning("version %s can't be encoded from: %s", version.id, error)
            continue
        return Start(image, Path(version.path), None, version, len(data))
    raise PermanentJobError(
        f"source {facts.sha256[:12]}…: the original is gone and no intact archive version is left to "
        "encode from"
    )


def read_recompress(ctx: JobContext, job: Job) -> Encoding | None:
    """A recompress job read: what to encode from, at which ratio; None when truncation did the job,
    or when a repair found the current file sound after all."""
    try:
        params = RecompressParameters.from_json(job.parameters)
    except ValueError as error:
        raise PermanentJobError(f"recompress job parameters: {error}") from error
    if job.target_ratio is None:
        raise PermanentJobError("a recompress job needs a target ratio")
    ratio = float(job.target_ratio)
    facts = _source_facts(ctx, job.source_id)
    current = _current(facts, job)
    if params.repair and _sound(ctx, job, facts, current):
        return None  # a stale damage mark (a file briefly missing, say): cleared, nothing made
    keep = params.keep_versions  # None: the source's (the most any of its jobs asked for)
    if params.method is Method.TRUNCATE:
        _truncate(ctx, job, facts, current, ratio, keep)
        return None
    start = _start(ctx, facts, skip=current.id if params.repair else None)
    if params.repair and start.version is not None and _coarser(start.version, current):
        log.warning("job %s: %s can only be made again from %s, at ratio %.2f where it was at %.2f: "
                    "coarser", job.id, current.path, start.name, start.version.achieved_ratio,
                    current.achieved_ratio)
    if start.version is not None and not params.repair and ratio < start.version.achieved_ratio * (1 - 1e-6):
        raise PermanentJobError(
            f"the original is gone: {start.name} is at ratio {start.version.achieved_ratio:.2f}, and a lower "
            f"ratio ({ratio:g}) can't bring back what it dropped"
        )
    codec = ctx.codec(job.model_id or current.model_id)
    write = partial(write_recompress, ctx, job, facts, current, start, codec, keep, params.repair)
    return Encoding(codec, start.image, ratio, start.name, write)


def write_recompress(
    ctx: JobContext, job: Job, facts: SourceFacts, current: ArchiveVersion, start: Start, codec: Codec,
    keep: int | None, repair: bool, data: bytes,
) -> None:
    """A recompress job's encoded `data` as the new version (or a passthrough: never bigger)."""
    ratio = float(job.target_ratio)
    if start.original is not None and len(data) >= facts.size:
        if current.kind is ArchiveKind.PASSTHROUGH and not repair:
            ctx.finish(job)
            reason = _too_big(data, start.original, ratio, start.name)
            log.info("job %s: %s; %s stays as it is", job.id, reason, current.path)
            return
        new = passthrough_version(start.original, facts.sha256, start.image, codec.model_id,
                                  Path(current.path))
    else:
        names = list(archive.candidates(archive.with_suffix(Path(current.path), archive.SUFFIX)))
        new = aic_version(codec, data, pixels_of(start.image), start.image, names,
                          start.version.id if start.version is not None else None)
    version = write_version(ctx, job, new, ratio, keep)
    metrics.count_io(job.kind, read=start.bytes_read, written=len(new.data))
    against = "the original" if new.reference_version_id is None else f"version {new.reference_version_id}"
    log.info("job %s: %s to %s (%s, ratio %.1f, measured against %s)", job.id,
             "repaired" if repair else "recompressed", version.path, version.kind.value,
             version.achieved_ratio, against)


def _truncate(
    ctx: JobContext, job: Job, facts: SourceFacts, current: ArchiveVersion, ratio: float, keep: int | None
) -> None:
    """`method: truncate`: the current `.aic` cut down to `ratio` (same model; no encoder)."""
    if current.kind is ArchiveKind.PASSTHROUGH:
        raise PermanentJobError(f"{current.path} holds the original's bytes: there is no .aic to truncate")
    if job.model_id is not None and job.model_id != current.model_id:
        raise PermanentJobError(f"{current.path}: truncation keeps the file's model; this job asks another")
    old = read_archive(current)
    codec = ctx.codec(current.model_id)
    try:
        data = codec.truncate(old, ratio)
        image = codec.decompress(old)
    except (ValueError, AicFormatError) as error:
        raise PermanentJobError(f"{current.path}: {error}") from error
    original = find_original(facts)
    if original is not None:  # measured against the original when it is there
        reference, against = pixels_of(open_image(original.data, original.path)), None
    else:
        reference, against = pixels_of(image), current.id
    new = aic_version(codec, data, reference, image, list(archive.candidates(Path(current.path))), against)
    version = write_version(ctx, job, new, ratio, keep)
    metrics.count_io(job.kind, read=len(old), written=len(data))
    log.info("job %s: truncated to %s (ratio %.1f)", job.id, version.path, version.achieved_ratio)


def recompress(ctx: JobContext, job: Job) -> None:
    run_encoding(read_recompress(ctx, job))


def restore(ctx: JobContext, job: Job) -> None:
    """The current version at the job's `output`: as PNG, or TIFF (`.tif`, the suffix replaced)
    for a mode PNG can't hold, as `aic-admin restore` does; a passthrough's bytes as they are."""
    output = job.parameters.get("output")
    if not output:
        raise PermanentJobError("a restore job needs an `output` path in its parameters")
    current = _current(_source_facts(ctx, job.source_id), job)
    data = read_archive(current)
    target = Path(output)
    if current.kind is ArchiveKind.PASSTHROUGH:
        written = data  # the original's bytes, bit for bit (their sha256 was just checked)
    else:
        try:
            decoded = ctx.codec(current.model_id).decompress(data)
        except AicFormatError as error:
            raise PermanentJobError(f"{current.path}: {error}") from error
        # The format that holds the mode, as the CLI's restore: PNG, else TIFF (CMYK, YCbCr, I).
        image, pil_format, suffix = for_file(decoded)
        target = target.with_suffix(suffix)
        buffer = io.BytesIO()
        extra = {k: image.info[k] for k in ("exif", "icc_profile") if k in image.info}
        image.save(buffer, format=pil_format, **extra)
        written = buffer.getvalue()
    staged = archive.stage(target, written, job.id)
    try:
        archive.place(staged, [target], hashlib.sha256(written).hexdigest())
    except FileExistsError as error:
        raise PermanentJobError(f"{target} exists with other content: not overwritten") from error
    finally:
        staged.unlink(missing_ok=True)
    ctx.finish(job)
    metrics.count_io(job.kind, read=len(data), written=len(written))
    log.info("job %s: restored %s to %s", job.id, current.path, target)


def _check_current(ctx: JobContext, facts: SourceFacts, current: ArchiveVersion) -> int:
    """Raise DamagedArchiveError unless the current file is sound; its bytes read."""
    data = read_archive(current)
    if current.kind is ArchiveKind.PASSTHROUGH:
        if current.sha256 != facts.sha256:
            raise DamagedArchiveError(f"{current.path}: a passthrough whose sha256 is not its source's")
        return len(data)  # bit-exact: nothing to decode
    decoded = decoded_pixels(ctx.codec(current.model_id), data, current.path)
    original = find_original(facts) if current.reference_version_id is None else None
    if original is not None and current.psnr is not None:
        reference = pixels_of(open_image(original.data, original.path))
        measured = psnr(reference.values, decoded.values, reference.peak)
        if abs(measured - current.psnr) > VERIFY_PSNR_TOLERANCE_DB:
            raise DamagedArchiveError(
                f"{current.path} decodes to PSNR {measured:.2f} dB, recorded {current.psnr:.2f} dB"
            )
    return len(data)


def _coarser(start: ArchiveVersion, damaged: ArchiveVersion) -> bool:
    """Whether `start` holds less than `damaged` did (a higher ratio): a repair from it is coarser."""
    return start.achieved_ratio > damaged.achieved_ratio * (1 + 1e-6)


def _sound(ctx: JobContext, job: Job, facts: SourceFacts, current: ArchiveVersion) -> bool:
    """A repair's first step: whether the current file checks (sha256, decode) after all; if so
    its damage mark is cleared and the job done, so that no sound file is replaced."""
    try:
        read = _check_current(ctx, facts, current)
    except DamagedArchiveError as error:
        log.info("%s is damaged: %s", current.path, error)
        return False
    _settle_mark(ctx, job, current.id, None, job_done=True)
    metrics.count_io(job.kind, read=read)
    log.info("%s checks again: its damage mark is cleared, nothing else done", current.path)
    return True


def verify(ctx: JobContext, job: Job) -> None:
    facts = _source_facts(ctx, job.source_id)
    current = _current(facts, job)
    try:
        read = _check_current(ctx, facts, current)
    except DamagedArchiveError:
        _settle_mark(ctx, job, current.id, utcnow(), job_done=False)
        raise
    _settle_mark(ctx, job, current.id, None, job_done=True)
    metrics.count_io(job.kind, read=read)
    log.info("job %s: %s verified", job.id, current.path)


def _settle_mark(
    ctx: JobContext, job: Job, version_id: int, when: datetime | None, *, job_done: bool
) -> None:
    """Set (`when`) or clear (None) the damage mark, in one transaction with a check that the job's
    lease is still ours (and, `job_done`, its completion): a mark drives repair, which may retire
    files, so a worker that lost its job must not set one."""

    def work(session: Session) -> None:
        owner = ctx.owner
        if job_done:  # completed_by: a retry after a commit whose answer was lost
            ours = lease.complete(session, job.id, owner) or lease.completed_by(session, job.id, owner)
        else:
            ours = lease.hold(session, job.id, owner)
        if not ours:
            raise LeaseLostError(f"job {job.id} is no longer ours")
        _mark_damaged(session, version_id, when)

    ctx.db(work)


def _mark_damaged(session: Session, version_id: int, when: datetime | None) -> None:
    """Set (a time) or clear (None) a version's damaged mark; a mark already set keeps its first time."""
    version = session.get(ArchiveVersion, version_id)
    if version is not None and (when is None or version.damaged_at is None):
        version.damaged_at = when


RUNNERS: dict[JobKind, Callable[[JobContext, Job], None]] = {
    JobKind.COMPRESS: compress,
    JobKind.RECOMPRESS: recompress,
    JobKind.RESTORE: restore,
    JobKind.VERIFY: verify,
}
READERS: dict[JobKind, Callable[[JobContext, Job], Encoding | None]] = {
    JobKind.COMPRESS: read_compress,
    JobKind.RECOMPRESS: read_recompress,
}
"""The kinds batch.py encodes together: read, then one compress_batch, then each one's `write`."""
