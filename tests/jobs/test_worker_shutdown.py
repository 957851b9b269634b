"""SIGTERM to a real `aic-worker` mid-job: a warm shutdown lets the job finish, committed once.

Service managers send SIGTERM to the whole process group (systemd's default control-group
mode, a terminal's kill of the job, `aic-admin run` before) or to the main process only
(KillMode=mixed, Kubernetes, Compose). Either way the pool process must finish its job:
the main process shuts down warm, and the pool processes ignore the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from sqlalchemy import Engine

from aic_worker.catalog.models import JobState
from tests.conftest import BIG, RATIO, Services, jobs, wait_for, write_photos
from tests.jobs.test_worker_process import temp_files, versions_per_source


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_sigterm_to_the_group_mid_job_lets_the_job_finish_once(services: Services, catalog: Engine) -> None:
    services.env["AIC_DB_RETRY_SECONDS"] = "4"  # shorter than the tests' 6 s lease
    write_photos(services.watched, 1, size=BIG, prefix="big")
    worker = services.start_worker()
    services.admin("add", str(services.watched), "--ratio", str(RATIO), "--archive", str(services.archive))
    worker.wait_ready()
    # Staged and being verified: the middle of the job.
    wait_for(lambda: services.archive.exists() and temp_files(services.archive), 120,
             "the job's temp file", interval=0.01)
    os.killpg(worker.process.pid, signal.SIGTERM)
    try:
        code = worker.process.wait(120)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker did not stop within 120 s of SIGTERM")
    out = worker.output()
    assert code == 0, out
    assert "WorkerLostError" not in out and "signal 15" not in out, out
    [job] = jobs(catalog)
    assert (job.state, job.attempts) == (JobState.DONE, 1), (job.state, job.attempts, job.last_error)
    assert sorted(versions_per_source(catalog).values()) == [1]
    assert not temp_files(services.archive)
