"""An archive's later life, in-process against a real catalog and real files: never bigger
(passthrough), recompress without the original, superseded files removed, 16-bit quality."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aic_worker.catalog import lease
from aic_worker.catalog.models import ArchiveKind, ArchiveVersion, Job, JobKind, JobState, utcnow
from aic_worker.codec.quality import EIGHT_BIT_PEAK, SIXTEEN_BIT_PEAK, psnr
from aic_worker.jobs import pipeline
from aic_worker.jobs.errors import LeaseLostError, PermanentJobError
from aic_worker.jobs.parameters import IfBigger, Method, RecompressParameters
from aic_worker.jobs.pipeline import JobContext
from aic_worker.store import archive, retention
from aic_worker.store.policy import Policy
from tests.conftest import photo
from tests.jobs.conftest import CODECS, Harness


def small_jpeg(harness: Harness, name: str = "small.jpg") -> Path:
    """A 96x96 JPEG of ~1.1 KB: a .aic at ratio 16 may take 1,728 bytes, so it would grow."""
    path = harness.root / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(96, 3).save(path, format="JPEG", quality=30)
    return path


def recompress(harness: Harness, source: int, ratio: float, **parameters: object) -> None:
    params = RecompressParameters(**parameters)  # type: ignore[arg-type]
    harness.run(harness.job(JobKind.RECOMPRESS, source, ratio=ratio, **params.to_json()))


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_a_jpeg_that_would_grow_is_kept_as_its_own_bytes_and_restores_bit_exactly(harness: Harness) -> None:
    jpeg = small_jpeg(harness)
    data = jpeg.read_bytes()
    source = harness.source(jpeg)
    job = harness.run(harness.compress_job(jpeg, ratio=16, policy=Policy.DELETE))
    assert job.state is JobState.DONE and not jpeg.exists()  # deleted only once its bytes were stored
    [version] = harness.versions()
    stored = Path(version.path)
    assert stored == harness.archive / "small.jpg.orig" and stored.read_bytes() == data
    assert version.kind is ArchiveKind.PASSTHROUGH and version.psnr is None and version.ms_ssim is None
    assert version.sha256 == hashlib.sha256(data).hexdigest() and version.bytes == len(data)
    assert version.achieved_ratio == pytest.approx(96 * 96 * 3 / len(data))  # the real one

    assert harness.run(harness.job(JobKind.VERIFY, source)).state is JobState.DONE  # no .aic decode
    output = harness.root / "restored" / "small.jpg"
    assert harness.run(harness.job(JobKind.RESTORE, source, output=str(output))).state is JobState.DONE
    assert output.read_bytes() == data

    # At 64x a .aic is smaller: the passthrough is encoded from (its bytes are the original's).
    recompress(harness, source, 64)
    old, new = harness.versions()
    assert new.kind is ArchiveKind.AIC and new.reference_version_id is None and new.achieved_ratio >= 64
    assert new.path == str(harness.archive / "small.jpg.aic") and new.bytes < len(data)
    assert old.removed_at is not None and not stored.exists()


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_folder_may_leave_a_file_that_would_grow_alone(harness: Harness) -> None:
    jpeg = small_jpeg(harness)
    with pytest.raises(PermanentJobError, match=r"not smaller than the original's .*left alone") as refused:
        harness.run(harness.compress_job(jpeg, ratio=16, policy=Policy.DELETE, if_bigger=IfBigger.LEAVE))
    assert not refused.value.bad_input and jpeg.exists()
    assert harness.versions() == [] and not harness.archive.exists()


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_recompress_without_the_original_encodes_the_stored_version_and_frees_its_file(
    harness: Harness,
) -> None:
    original = harness.original("a.png", seed=4)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, policy=Policy.DELETE))
    [first] = harness.versions()
    first_file = Path(first.path)
    codec = CODECS.get(harness.sessions, harness.model_id)
    decoded_first = np.asarray(codec.decompress(first_file.read_bytes()).convert("RGB"))

    recompress(harness, source, 32)
    first, second = harness.versions()
    assert second.reference_version_id == first.id and second.achieved_ratio >= 32
    decoded_second = np.asarray(codec.decompress(Path(second.path).read_bytes()).convert("RGB"))
    assert second.psnr == pytest.approx(psnr(decoded_first, decoded_second), abs=1e-9)
    assert first.removed_at is not None and not first_file.exists()  # keep_versions 1: the space is freed

    recompress(harness, source, 64, method=Method.TRUNCATE)  # the explicit choice: no encoder
    *_, third = harness.versions()
    assert third.reference_version_id == second.id and third.achieved_ratio >= 64
    assert not Path(second.path).exists()
    with pytest.raises(PermanentJobError, match="lower ratio"):
        recompress(harness, source, 32)


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_keep_versions_and_a_lost_lease_never_removes_an_old_file(harness: Harness) -> None:
    original = harness.original("a.png", seed=5)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, keep_versions=2))
    recompress(harness, source, 16)
    recompress(harness, source, 32)
    first, second, third = harness.versions()
    assert first.removed_at is not None and not Path(first.path).exists()
    assert second.removed_at is None and Path(second.path).exists() and Path(third.path).exists()

    # A worker whose lease was taken back and given to another while it encoded: its commit
    # finds the job no longer its own, so it records nothing and removes no old file.
    job = harness.job(JobKind.RECOMPRESS, source, ratio=48)
    loser, winner = lease.new_owner(), lease.new_owner()
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, loser, job_id=job.id)
    with harness.sessions() as session, session.begin():  # the reaper, then another worker's claim
        session.get(Job, job.id).lease_expires_at = utcnow() - timedelta(seconds=1)
        lease.reap(session)
        assert lease.claim(session, winner, job_id=job.id) is not None
    with pytest.raises(LeaseLostError):
        pipeline.recompress(JobContext(harness.sessions, loser, CODECS, 5.0, threading.Event()), claimed)
    assert [v.id for v in harness.versions()] == [first.id, second.id, third.id]
    assert Path(second.path).exists() and Path(third.path).exists()
    assert sorted(p.name for p in harness.archive.iterdir()) == sorted(
        Path(v.path).name for v in (second, third)
    )  # the loser's placed file is gone too


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_kill_after_the_commit_leaves_both_files_never_neither(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = harness.original("a.png", seed=6)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, policy=Policy.DELETE))

    def killed(files: list[retention.Retired]) -> int:
        raise KeyboardInterrupt("killed between the commit and the removal")

    monkeypatch.setattr(retention, "remove_retired", killed)
    with pytest.raises(KeyboardInterrupt):
        recompress(harness, source, 32)
    old, new = harness.versions()
    assert old.removed_at is not None and new.superseded_by is None
    assert Path(old.path).exists() and Path(new.path).exists()  # prune deletes the marked one


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_sixteen_bit_grey_quality_is_measured_on_its_real_values(harness: Harness) -> None:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 65535, 96, dtype=np.float64)[None, :] * np.ones((96, 1))
    values = np.clip(ramp + rng.normal(0, 3000, (96, 96)), 0, 65535).astype(np.uint16)
    path = harness.root / "in" / "grey16.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    harness.run(harness.compress_job(path, ratio=16))
    [version] = harness.versions()
    decoded = CODECS.get(harness.sessions, harness.model_id).decompress(Path(version.path).read_bytes())
    real = psnr(values.astype(np.float64), np.asarray(decoded).astype(np.float64), SIXTEEN_BIT_PEAK)
    clipped = psnr(np.asarray(Image.open(path).convert("RGB")), np.asarray(decoded.convert("RGB")),
                   EIGHT_BIT_PEAK)
    assert version.psnr == pytest.approx(real, abs=1e-9) and abs(real - clipped) > 1
    assert harness.run(harness.job(JobKind.VERIFY, harness.source(path))).state is JobState.DONE


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_a_commit_retires_a_damaged_version_first_and_keeps_the_intact_one(harness: Harness) -> None:
    """Keep 2 after a repair: the damaged version goes, the intact older one stays (until
    0.4.0's review the damaged one was kept and the intact one deleted)."""
    original = harness.original("a.png", seed=8)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, policy=Policy.DELETE, keep_versions=2))
    recompress(harness, source, 32)
    first, second = harness.versions()
    _flip_a_byte(Path(second.path))
    with pytest.raises(pipeline.DamagedArchiveError):
        harness.run(harness.job(JobKind.VERIFY, source))

    recompress(harness, source, 32, repair=True)
    first, second, third = harness.versions()
    assert third.superseded_by is None and third.reference_version_id == first.id
    assert second.removed_at is not None and not Path(second.path).exists()
    assert first.removed_at is None and Path(first.path).exists()


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_a_verify_that_lost_its_lease_marks_nothing(harness: Harness) -> None:
    """A damage mark leads repair to replace a file, so only the lease's holder may set one."""
    original = harness.original("a.png", seed=9)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=32))
    [version] = harness.versions()
    _flip_a_byte(Path(version.path))
    job = harness.job(JobKind.VERIFY, source)
    loser, winner = lease.new_owner(), lease.new_owner()
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, loser, job_id=job.id)
    with harness.sessions() as session, session.begin():  # reaped and claimed by another meanwhile
        session.get(Job, job.id).lease_expires_at = utcnow() - timedelta(seconds=1)
        lease.reap(session)
        assert lease.claim(session, winner, job_id=job.id) is not None
    with pytest.raises(LeaseLostError):
        pipeline.verify(JobContext(harness.sessions, loser, CODECS, 5.0, threading.Event()), claimed)
    [version] = harness.versions()
    assert version.damaged_at is None


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_repair_encodes_from_an_older_version_whose_damage_mark_is_stale(harness: Harness) -> None:
    """Its file holds its bytes: the sha256 decides, not the mark (0.4.0's review)."""
    original = harness.original("a.png", seed=10)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, policy=Policy.DELETE, keep_versions=2))
    recompress(harness, source, 32)
    first, second = harness.versions()
    with harness.sessions() as session, session.begin():  # marked once while its file was away
        session.get(ArchiveVersion, first.id).damaged_at = utcnow()
    _flip_a_byte(Path(second.path))
    recompress(harness, source, 32, repair=True)
    *_, made = harness.versions()
    assert made.superseded_by is None and made.reference_version_id == first.id


@dataclass
class WatchedCommit(JobContext):
    """A context that runs `meanwhile` just before its commit's transaction and notes what is
    hashed inside that transaction."""

    meanwhile: Callable[[], object] = lambda: None
    inside: bool = False
    hashed_inside: list[str] = field(default_factory=list)

    def db(self, work):  # type: ignore[no-untyped-def]
        if getattr(work, "__name__", "") != "commit":
            return super().db(work)
        self.meanwhile()

        def commit(session):  # type: ignore[no-untyped-def]
            self.inside = True
            try:
                return work(session)
            finally:
                self.inside = False

        return super().db(commit)


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_a_commit_hashes_kept_files_before_its_transaction_and_again_only_what_changed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep 2: the older files are hashed before the commit's transaction (inside it until
    0.4.0); the one damaged between that hashing and the commit is judged again and retired
    first, the intact older one kept."""
    original = harness.original("a.png", seed=11)
    source = harness.source(original)
    harness.run(harness.compress_job(original, ratio=8, keep_versions=2))
    recompress(harness, source, 32)
    first, second = harness.versions()
    job = harness.job(JobKind.RECOMPRESS, source, ratio=16, **RecompressParameters().to_json())
    owner = lease.new_owner()
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, owner, job_id=job.id)
    ctx = WatchedCommit(harness.sessions, owner, CODECS, 5.0, threading.Event(),
                        meanwhile=lambda: _flip_a_byte(Path(second.path)))
    real_sha256 = archive.file_sha256

    def sha256(path: Path) -> str:
        if ctx.inside:
            ctx.hashed_inside.append(str(path))
        return real_sha256(path)

    monkeypatch.setattr(archive, "file_sha256", sha256)
    pipeline.recompress(ctx, claimed)
    first, second, third = harness.versions()
    assert third.superseded_by is None
    assert ctx.hashed_inside == [third.path, second.path]  # the new file's check under the path lock
    assert second.removed_at is not None and second.damaged_at is not None and not Path(second.path).exists()
    assert first.removed_at is None and Path(first.path).exists()
