"""Each job kind's work, in-process against a real catalog and real files (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from aic_worker.catalog.models import JobKind, JobState, SourcePath
from aic_worker.catalog.sources import current_version
from aic_worker.jobs.errors import LeaseLostError, PermanentJobError
from aic_worker.store import archive
from aic_worker.store.policy import Policy
from tests.jobs.conftest import CODECS, RATIO, Harness


def test_compress_writes_verifies_commits_then_moves_the_original(harness: Harness) -> None:
    original = harness.original("2024/a.png")
    job = harness.run(harness.compress_job(original, policy=Policy.MOVE, done_dir=harness.root / "done"))
    assert job.state is JobState.DONE
    [version] = harness.versions()
    target = harness.archive / "2024" / "a.png.aic"
    assert version.path == str(target) and version.sha256 == archive.file_sha256(target)
    assert version.bytes == target.stat().st_size and version.achieved_ratio >= RATIO
    assert version.model_id == harness.model_id and version.psnr > 0 and 0 < version.ms_ssim <= 1
    assert not original.exists() and (harness.root / "done" / "2024" / "a.png").is_file()
    with harness.sessions() as session:
        assert session.scalars(select(SourcePath.removed_at)).one() is not None


def test_same_name_from_two_folders_gets_a_second_name_and_delete_policy(harness: Harness) -> None:
    first = harness.original("a.png", seed=1, folder="in")
    second = harness.original("a.png", seed=2, folder="other")
    harness.run(harness.compress_job(first))
    harness.run(harness.compress_job(second, folder="other", policy=Policy.DELETE))
    assert [Path(v.path).name for v in harness.versions()] == ["a.png.aic", "a.png.2.aic"]
    assert first.exists() and not second.exists()


def test_a_retry_removes_stale_temps_and_adopts_a_placed_uncommitted_file(harness: Harness) -> None:
    original = harness.original("a.png")
    job = harness.compress_job(original)
    target = harness.archive / "a.png.aic"
    target.parent.mkdir(parents=True)
    stale = target.with_name(f".a.png.aic.job{job.id}.0badf00d.tmp")
    stale.write_bytes(b"half a file")
    # What the crashed attempt had placed: the same bytes this attempt will produce.
    target.write_bytes(CODECS.get(harness.sessions, harness.model_id).compress(Image.open(original), RATIO))
    assert harness.run(job).state is JobState.DONE
    [version] = harness.versions()
    assert version.path == str(target) and not stale.exists()
    assert sorted(p.name for p in harness.archive.iterdir()) == ["a.png.aic"]


def test_a_lost_lease_drops_the_work_and_leaves_no_file(harness: Harness) -> None:
    original = harness.original("a.png")
    with pytest.raises(LeaseLostError):
        harness.run(harness.compress_job(original), lost=True)
    assert harness.versions() == [] and list(harness.archive.rglob("*")) == []


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_permanent_errors_name_their_cause_and_leave_the_original(harness: Harness) -> None:
    original = harness.original("a.png")
    with pytest.raises(PermanentJobError, match="cannot be met") as unreachable:
        harness.run(harness.compress_job(original, ratio=4000, policy=Policy.DELETE))
    assert not unreachable.value.bad_input and original.exists()

    changed = harness.original("b.png", seed=5)
    job = harness.compress_job(changed)
    Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(changed)
    with pytest.raises(PermanentJobError, match="gone or its content changed"):
        harness.run(job)

    not_an_image = harness.root / "in" / "c.png"
    not_an_image.write_bytes(b"GIF89a, or so it says")
    with pytest.raises(PermanentJobError, match="not a readable image") as bad:
        harness.run(harness.compress_job(not_an_image))
    assert bad.value.bad_input and harness.versions() == []


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_recompress_restore_verify(harness: Harness) -> None:
    original = harness.original("a.png")
    source = harness.source(original)
    harness.run(harness.compress_job(original))
    harness.run(harness.job(JobKind.RECOMPRESS, source, ratio=48))  # from the original
    original.unlink()
    harness.run(harness.job(JobKind.RECOMPRESS, source, ratio=96))  # by truncation: the original is gone
    first, second, third = harness.versions()
    names = [Path(v.path).name for v in (first, second, third)]
    assert names == ["a.png.aic", "a.png.2.aic", "a.png.2.2.aic"]
    assert second.achieved_ratio >= 48 and third.achieved_ratio >= 96
    with harness.sessions() as session:
        assert current_version(session, source).id == third.id
    with pytest.raises(PermanentJobError, match="original is gone"):
        harness.run(harness.job(JobKind.RECOMPRESS, source, ratio=30))

    output = harness.root / "restored" / "a.png"
    assert harness.run(harness.job(JobKind.RESTORE, source, output=str(output))).state is JobState.DONE
    assert Image.open(output).size == (96, 96)

    assert harness.run(harness.job(JobKind.VERIFY, source)).state is JobState.DONE
    Path(third.path).write_bytes(Path(third.path).read_bytes()[:-5])
    with pytest.raises(PermanentJobError, match="does not match its recorded sha256"):
        harness.run(harness.job(JobKind.VERIFY, source))
