"""Compress and recompress jobs that wait together run as one batch, in-process (real catalog and files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine

from aic_worker.catalog import lease
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import Job, JobKind, JobState, Source, SourceState
from aic_worker.config import WorkerConfig
from aic_worker.jobs.batch import execute_batched
from aic_worker.jobs.runner import claim
from aic_worker.store.policy import Policy
from tests.jobs.conftest import CODECS, RATIO, Harness


def _config(batch: int) -> WorkerConfig:
    return WorkerConfig.from_env({"AIC_BATCH": str(batch), "AIC_DB_RETRY_SECONDS": "5"})


def _run(harness: Harness, job: Job, batch: int) -> str:
    """What a task does with `job`'s message: claim it, then run it with any companions."""
    owner, config = lease.new_owner(), _config(batch)
    claimed = claim(harness.sessions, job.id, owner, config)
    if claimed is None:
        return "nothing to do"
    return execute_batched(harness.sessions, CODECS, claimed, owner, config)


def _state(harness: Harness, job: Job) -> Job:
    with harness.sessions() as session:
        return session.get(Job, job.id)


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_waiting_jobs_are_encoded_together_each_done_once(harness: Harness) -> None:
    originals = [harness.original(f"{i}.png", seed=i) for i in range(5)]
    queued = [harness.compress_job(path) for path in originals]
    assert _run(harness, queued[0], batch=4) == "done"
    states = [_state(harness, job) for job in queued]
    assert [j.state for j in states] == [JobState.DONE] * 4 + [JobState.PENDING]
    assert all(j.attempts == 1 and j.lease_expires_at is None for j in states[:4])
    assert len({j.lease_owner for j in states[:4]}) == 1  # one worker completed them all

    # The companions' own messages come later and find nothing to do; the fifth runs alone.
    assert [_run(harness, job, batch=4) for job in queued[1:]] == ["nothing to do"] * 3 + ["done"]
    versions = harness.versions()
    assert sorted(v.source_id for v in versions) == sorted(j.source_id for j in queued)
    codec = CODECS.get(harness.sessions, harness.model_id)
    for path in originals:
        archived = harness.archive / f"{path.name}.aic"
        assert archived.read_bytes() == codec.compress(Image.open(path), RATIO)  # as if run alone
    assert not list(harness.archive.glob(".*.tmp"))


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_bad_job_in_a_batch_fails_alone(harness: Harness) -> None:
    good = [harness.original(f"{i}.png", seed=i) for i in range(2)]
    corrupt = harness.root / "in" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    unreachable = harness.original("tiny.png", seed=9)
    queued = [harness.compress_job(good[0]), harness.compress_job(corrupt), harness.compress_job(good[1]),
              harness.compress_job(unreachable, ratio=4000)]
    assert _run(harness, queued[0], batch=8) == "done"
    done, bad, other, refused = (_state(harness, job) for job in queued)
    assert done.state is JobState.DONE and other.state is JobState.DONE
    assert bad.state is JobState.QUARANTINED and "not a readable image" in bad.quarantine_reason
    assert refused.state is JobState.QUARANTINED and "cannot be met" in refused.quarantine_reason
    with harness.sessions() as session:
        assert session.get(Source, bad.source_id).state is SourceState.QUARANTINED
        assert session.get(Source, refused.source_id).state is not SourceState.QUARANTINED
    assert sorted(v.source_id for v in harness.versions()) == sorted([done.source_id, other.source_id])
    assert corrupt.is_file() and unreachable.is_file()


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_batch_one_or_another_model_leaves_the_others_waiting(
    harness: Harness, catalog: Engine, tmp_path: Path
) -> None:
    first, second = (harness.compress_job(harness.original(f"{i}.png", seed=i)) for i in range(2))
    assert _run(harness, first, batch=1) == "done"
    assert _state(harness, second).state is JobState.PENDING

    with harness.sessions() as session, session.begin():
        register_model(session, "ab" * 32, str(tmp_path / "other.safetensors"))
    other_model = Harness(catalog, "ab" * 32, harness.root)
    third = other_model.compress_job(harness.original("2.png", seed=2))
    fourth = harness.compress_job(harness.original("3.png", seed=3))
    assert _run(harness, second, batch=4) == "done"
    assert _state(harness, fourth).state is JobState.DONE  # same model: batched in
    assert _state(harness, third).state is JobState.PENDING  # another model: left for its own message


def test_batch_size_setting() -> None:
    assert WorkerConfig.from_env({}).batch_size == 4
    assert WorkerConfig.from_env({"AIC_BATCH": "1"}).batch_size == 1
    for bad in ("0", "-2", "four", "2.5"):
        with pytest.raises(ValueError, match="AIC_BATCH"):
            WorkerConfig.from_env({"AIC_BATCH": bad})


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_recompress_jobs_without_originals_are_batched_too(harness: Harness) -> None:
    originals = [harness.original(f"{i}.png", seed=i) for i in range(2)]
    sources = [harness.source(path) for path in originals]
    for path in originals:
        harness.run(harness.compress_job(path, policy=Policy.DELETE))
    with harness.sessions() as session, session.begin():
        queued = [enqueue_job(session, JobKind.RECOMPRESS, s, target_ratio=64, model_id=harness.model_id)[0]
                  for s in sources]
    assert _run(harness, queued[0], batch=4) == "done"
    assert _run(harness, queued[1], batch=4) == "nothing to do"  # it was encoded in the first one's batch
    current = [v for v in harness.versions() if v.superseded_by is None]
    assert [v.achieved_ratio >= 64 for v in current] == [True, True]
    assert all(v.reference_version_id is not None for v in current)
