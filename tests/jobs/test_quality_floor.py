"""A folder's quality floor (`min_psnr`, 0.4.0) against the worker's AIC_MIN_PSNR, on real files.

The tiny model of the `model_file` fixture reaches about 7 dB at the test ratio: a floor of
5 dB lets an archive through, 20 or 30 dB refuses it.
"""

from __future__ import annotations

import pytest

from aic_worker.catalog import lease
from aic_worker.catalog.models import Job, JobState
from aic_worker.config import WorkerConfig
from aic_worker.jobs.parameters import CompressParameters
from aic_worker.jobs.runner import claim, execute
from aic_worker.store.policy import Policy
from tests.jobs.conftest import CODECS, Harness


def _run(harness: Harness, job: Job, config: WorkerConfig) -> tuple[str, Job]:
    """`job` run as a worker with `config` runs it; its outcome and the job as the catalog holds it."""
    owner = lease.new_owner()
    claimed = claim(harness.sessions, job.id, owner, config)
    assert claimed is not None
    outcome = execute(harness.sessions, CODECS, claimed, owner, config)
    with harness.sessions() as session:
        return outcome, session.get(Job, job.id)


def test_a_folders_floor_keeps_an_original_the_worker_floor_alone_would_delete(harness: Harness) -> None:
    config = WorkerConfig.from_env({"AIC_DB_RETRY_SECONDS": "5", "AIC_MIN_PSNR": "5"})
    strict = harness.original("strict.png", seed=1)
    plain = harness.original("plain.png", seed=2)
    outcome, job = _run(harness, harness.compress_job(strict, policy=Policy.DELETE, min_psnr=30.0), config)
    assert outcome == "quarantined" and job.state is JobState.QUARANTINED
    assert "below the quality floor of 30 dB (the folder's min_psnr) that the delete policy" in (
        job.quarantine_reason or "")
    assert strict.exists() and harness.versions() == []
    assert [p for p in harness.archive.rglob("*") if p.is_file()] == []
    # The same content rules under the worker's floor alone: archived, and the original deleted.
    outcome, job = _run(harness, harness.compress_job(plain, policy=Policy.DELETE), config)
    assert (outcome, job.state) == ("done", JobState.DONE)
    [version] = harness.versions()
    assert version.psnr is not None and 5 < version.psnr < 30 and not plain.exists()


def test_move_is_guarded_too_and_a_folders_zero_turns_the_floor_off(harness: Harness) -> None:
    config = WorkerConfig.from_env({"AIC_DB_RETRY_SECONDS": "5"})  # the default floor, 20 dB
    done = harness.root / "done"
    guarded = harness.original("guarded.png", seed=1)
    outcome, job = _run(harness, harness.compress_job(guarded, policy=Policy.MOVE, done_dir=done), config)
    assert outcome == "quarantined"
    assert "20 dB (the worker's AIC_MIN_PSNR) that the move policy" in (job.quarantine_reason or "")
    assert guarded.exists() and not done.exists() and harness.versions() == []
    free = harness.original("free.png", seed=2)
    job = harness.compress_job(free, policy=Policy.MOVE, done_dir=done, min_psnr=0)
    assert _run(harness, job, config)[0] == "done"
    assert not free.exists() and (done / "free.png").is_file() and len(harness.versions()) == 1


def test_min_psnr_in_a_jobs_parameters_is_optional_and_checked() -> None:
    old = {"path": "/in/a.png", "folder": "/in", "archive_root": "/archive", "policy": "delete"}
    assert CompressParameters.from_json(old).min_psnr is None  # a job written before 0.4.0
    params = CompressParameters.from_json({**old, "min_psnr": 31.5})
    assert params.min_psnr == 31.5 and CompressParameters.from_json(params.to_json()) == params
    assert CompressParameters.from_json({**old, "min_psnr": None}).min_psnr is None
    for bad in (-1, "30", True, float("nan")):
        with pytest.raises(ValueError, match="min_psnr must be 0"):
            CompressParameters.from_json({**old, "min_psnr": bad})
