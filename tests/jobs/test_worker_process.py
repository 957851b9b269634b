"""End to end: `aic-admin add`, a real Redis, a real `aic-worker` process, a real catalog and files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from aic_worker.catalog.models import ArchiveVersion, JobState, Source, SourceState
from tests.jobs.conftest import (
    BIG,
    RATIO,
    Services,
    all_finished,
    jobs,
    session_on,
    wait_for,
    write_photos,
)


def add_folder(services: Services) -> subprocess.CompletedProcess[str]:
    return services.admin(
        "add", str(services.watched), "--ratio", str(RATIO), "--archive", str(services.archive)
    )


def versions_per_source(engine: Engine) -> dict[int, int]:
    with session_on(engine) as session:
        query = select(ArchiveVersion.source_id, func.count()).group_by(ArchiveVersion.source_id)
        return dict(session.execute(query).all())


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_jobs_all_done_once_corrupt_input_quarantined(services: Services, catalog: Engine) -> None:
    originals = write_photos(services.watched / "2024", 4)
    corrupt = services.watched / "2024" / "a-corrupt.png"  # sorts first: the jobs after it must still run
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    worker = services.start_worker()
    added = add_folder(services)
    assert "queued 5 job(s)" in added.stdout
    worker.wait_ready()
    wait_for(all_finished(catalog, 5), 120, "all jobs to finish")

    found = {Path(j.parameters["path"]): j for j in jobs(catalog)}
    assert found[corrupt].state is JobState.QUARANTINED
    assert "not a readable image" in found[corrupt].quarantine_reason
    assert corrupt.read_bytes().endswith(b"not an image")  # the original is untouched
    for original in originals:
        assert found[original].state is JobState.DONE, found[original].last_error
        archived = services.archive / "2024" / f"{original.name}.aic"
        assert archived.is_file() and original.is_file()  # default policy: keep
    assert sorted(versions_per_source(catalog).values()) == [1, 1, 1, 1]
    with session_on(catalog) as session:
        bad = session.get(Source, found[corrupt].source_id)
        assert bad.state is SourceState.QUARANTINED and "not a readable image" in bad.reason
        version = session.scalars(select(ArchiveVersion)).first()
        assert version.achieved_ratio >= RATIO and version.psnr > 0 and 0 < version.ms_ssim <= 1

    again = add_folder(services)
    assert "queued 0 job(s); 5 already queued or archived" in again.stdout
    status = json.loads(services.admin("status", "--json").stdout)
    assert status["jobs"]["done"] == 4 and status["jobs"]["quarantined"] == 1
    assert status["broker"] == "ok" and status["queue_depth"] == 0
    assert len(status["workers"]) == 1
    assert status["throughput_jobs_per_minute"]["1m"] >= 4
    assert status["recent_failures"][0]["reason"].startswith(str(corrupt))
    assert not temp_files(services.archive)


def _temp_appears(root: Path) -> bool:
    return bool(temp_files(root)) if root.exists() else False


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_kill_9_mid_job_then_restart_completes_it_once(services: Services, catalog: Engine) -> None:
    [big] = write_photos(services.watched, 1, size=BIG, prefix="big")
    small = write_photos(services.watched, 2, prefix="small")
    worker = services.start_worker()
    add_folder(services)
    worker.wait_ready()
    # Staged and being verified (decoded, measured): the middle of invariant 2's sequence.
    wait_for(lambda: _temp_appears(services.archive), 120, "the big job's temp file", interval=0.01)
    worker.kill()
    assert temp_files(services.archive)  # the crash left its temp file behind
    assert services.broker.client.hlen("unacked") == 1  # acks_late: the message was not acknowledged
    assert next(j for j in jobs(catalog) if j.parameters["path"] == str(big)).state is JobState.RUNNING

    services.start_worker().wait_ready()
    wait_for(all_finished(catalog, 3), 120, "the jobs to finish after the restart")
    assert all(j.state is JobState.DONE for j in jobs(catalog)), [j.last_error for j in jobs(catalog)]
    big_job = next(j for j in jobs(catalog) if j.parameters["path"] == str(big))
    assert big_job.attempts >= 2 and "expired" in big_job.last_error
    assert sorted(versions_per_source(catalog).values()) == [1, 1, 1]
    assert not temp_files(services.archive)
    expected = sorted(f"{p.name}.aic" for p in [big, *small])
    assert sorted(p.name for p in services.archive.iterdir()) == expected


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_flushall_with_jobs_pending_the_reaper_finishes_them(services: Services, catalog: Engine) -> None:
    write_photos(services.watched, 3)
    add_folder(services)
    assert services.broker.client.llen("aic") == 3
    services.broker.flush()
    assert services.broker.client.llen("aic") == 0
    assert all(j.state is JobState.PENDING for j in jobs(catalog))

    worker = services.start_worker()
    worker.wait_ready()
    wait_for(all_finished(catalog, 3), 120, "the reaper to republish and the jobs to finish")
    assert all(j.state is JobState.DONE and j.attempts == 1 for j in jobs(catalog))
    assert sorted(versions_per_source(catalog).values()) == [1, 1, 1]
    assert "published 3 job(s) that had no message" in worker.output()


def _pool_children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_pool_process_killed_message_requeued_job_completes(services: Services, catalog: Engine) -> None:
    write_photos(services.watched, 1, size=BIG, prefix="big")
    worker = services.start_worker()
    add_folder(services)
    worker.wait_ready()
    wait_for(lambda: _temp_appears(services.archive), 120, "the job's temp file", interval=0.01)
    [child] = _pool_children(worker.process.pid)
    os.kill(child, signal.SIGKILL)
    wait_for(all_finished(catalog, 1), 120, "the job to finish in a new pool process")
    [job] = jobs(catalog)
    assert job.state is JobState.DONE and job.attempts >= 2
    # task_reject_on_worker_lost: the message came back and was delivered a second time.
    received = re.findall(r"Task aic\.compress\[([0-9a-f-]+)\] received", worker.output())
    assert max(received.count(task_id) for task_id in received) >= 2
    assert sorted(versions_per_source(catalog).values()) == [1]
    assert not temp_files(services.archive)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_waiting_jobs_batched_by_a_real_worker_archived_once(services: Services, catalog: Engine) -> None:
    write_photos(services.watched, 6)
    add_folder(services)  # all six pending, with their messages, before the worker starts
    worker = services.start_worker(AIC_BATCH="4")
    worker.wait_ready()
    wait_for(all_finished(catalog, 6), 120, "all jobs to finish")
    wait_for(lambda: services.broker.client.llen("aic") == 0, 60, "the companions' messages to be consumed")
    assert all(j.state is JobState.DONE and j.attempts == 1 for j in jobs(catalog))
    assert sorted(versions_per_source(catalog).values()) == [1] * 6
    assert len(list(services.archive.glob("*.aic"))) == 6 and not temp_files(services.archive)
    output = worker.output()
    assert re.search(r"job \d+: batched with job\(s\) \d+, \d+, \d+", output), output
    duplicates_did_nothing = lambda: worker.output().count("'nothing to do'") >= 3  # noqa: E731
    wait_for(duplicates_did_nothing, 60, "the companions' messages to do nothing")
