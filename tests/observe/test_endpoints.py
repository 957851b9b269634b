"""A real watcher and a real worker, each with /metrics, /healthz and JSON logs, after real jobs.

The counts are checked against the catalog and the files (the truth), not against
themselves: the worker's job counters come from its pool process through
PROMETHEUS_MULTIPROC_DIR, so a worker that served only its main process's values would
show no jobs at all.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, select

from aic_worker.admin.private_redis import free_port
from aic_worker.catalog.models import ArchiveVersion
from aic_worker.store.archive import file_sha256
from tests.conftest import RATIO, Services, all_finished, jobs, session_on, wait_for, write_photos
from tests.observe.conftest import Samples, get, healthy, scrape, value

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)

# Celery prints this from its signal handler, where logging is not safe; not a log line.
CELERY_SHUTDOWN_NOTICE = "worker: Warm shutdown (MainProcess)"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object; fails on a line that is not one."""
    lines = [line for line in text.splitlines() if line.strip() and line != CELERY_SHUTDOWN_NOTICE]
    return [json.loads(line) for line in lines]


def listening_addresses(pid: int, port: int) -> set[str]:
    """The addresses that process `pid`, or one of its children, listens on at `port`."""
    parent = psutil.Process(pid)
    return {
        c.laddr.ip
        for process in (parent, *parent.children(recursive=True))
        for c in process.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def start_watcher(services: Services, inbox: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**services.env, "AIC_METRICS_PORT": str(port), "AIC_LOG_FORMAT": "json"}
    with open(log, "wb") as file:
        return subprocess.Popen(
            [sys.executable, "-m", "aic_watch.main", str(inbox), "--ratio", str(RATIO), "--archive",
             str(services.archive), "--stability-window", "0.3"],
            env=env, stderr=file,
        )


def test_watcher_and_worker_serve_counts_health_and_json_logs_of_real_jobs(
    services: Services, catalog: Engine, model_file: Path
) -> None:
    worker_port, watcher_port = free_port(), free_port()
    worker = services.start_worker(AIC_METRICS_PORT=str(worker_port), AIC_METRICS_SECONDS="0.5",
                                   AIC_LOG_FORMAT="json")
    inbox = services.watched
    inbox.mkdir(parents=True)
    watcher_log = services.root / "watcher.log"
    watcher = start_watcher(services, inbox, watcher_port, watcher_log)
    try:
        worker.wait_ready()
        wait_for(lambda: healthy(worker_port), 60, "the worker's /healthz")
        wait_for(lambda: healthy(watcher_port), 60, "the watcher's /healthz")
        originals = write_photos(inbox, 2)
        wait_for(all_finished(catalog, 2), 120, "both jobs")
        with session_on(catalog) as session:
            written = sum(session.scalars(select(ArchiveVersion.bytes)))
        read = sum(path.stat().st_size for path in originals)

        # A job is done in the catalog a moment before its task returns and is counted.
        def counted(samples: Samples) -> float | None:
            return value(samples, "aic_worker_jobs_total", kind="compress", outcome="done")

        wait_for(lambda: counted(scrape(worker_port)) == 2, 30, "the worker to count both jobs")
        worker_samples = scrape(worker_port)
        outcomes = sum(v for (name, labels), v in worker_samples.items()
                       if name == "aic_worker_jobs_total" and ("kind", "compress") in labels)
        tasks = outcomes - (value(worker_samples, "aic_worker_batched_jobs_total", kind="compress") or 0)
        # every task is timed, duplicate messages too; a job batched into another's task is not one
        assert value(worker_samples, "aic_worker_job_seconds_count", kind="compress") == tasks
        assert value(worker_samples, "aic_worker_encode_seconds_count") == 2
        assert value(worker_samples, "aic_worker_bytes_in_total", kind="compress") == read
        assert value(worker_samples, "aic_worker_bytes_out_total", kind="compress") == written
        model_id = file_sha256(model_file)
        assert value(worker_samples, "aic_worker_model_loaded", model_id=model_id, device="cpu") == 1

        def worker_saw_them_done() -> bool:
            samples = scrape(worker_port)
            return value(samples, "aic_jobs", state="done") == 2 and value(samples, "aic_queue_depth") == 0

        wait_for(worker_saw_them_done, 30, "the worker's backlog gauges")
        assert value(scrape(worker_port), "aic_dependency_up", dependency="catalog") == 1
        assert healthy(worker_port) == {"status": "ok", "last_round_seconds_ago": pytest.approx(0, abs=30),
                                        "catalog": True, "broker": True}

        watcher_samples = scrape(watcher_port)  # measured at the scrape
        assert value(watcher_samples, "aic_watch_files_total", outcome="queued") == 2
        assert value(watcher_samples, "aic_watch_bytes_total") == read
        assert value(watcher_samples, "aic_watch_model", model_id=model_id) == 1
        assert value(watcher_samples, "aic_jobs", state="done") == 2
        assert value(watcher_samples, "aic_queue_depth") == 0
        assert value(watcher_samples, "aic_dependency_up", dependency="broker") == 1
        assert healthy(watcher_port)["paused_folders"] == 0  # a count: /healthz names no paths
        assert str(inbox) not in get(watcher_port, "/healthz")[1].decode()
        # Without AIC_METRICS_ADDRESS both listen on this host only.
        assert listening_addresses(watcher.pid, watcher_port) == {"127.0.0.1"}
        assert listening_addresses(worker.process.pid, worker_port) == {"127.0.0.1"}
        assert get(watcher_port, "/nothing")[0] == 404
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(30)
        worker.stop()
    assert watcher.returncode == 0, watcher_log.read_text()

    job_ids = {job.id for job in jobs(catalog)}
    worker_lines = json_lines(worker.output())
    archived = [line for line in worker_lines if " -> " in line["message"]]  # pipeline: "job N: a -> b"
    assert {line["job_id"] for line in archived} == job_ids
    assert all(line["message"].startswith(f"job {line['job_id']}:") for line in archived)
    succeeded = [line for line in worker_lines if "succeeded" in line["message"]]  # Celery's own line
    assert {line["job_id"] for line in succeeded} == job_ids
    watcher_lines = json_lines(watcher_log.read_text())
    queued = [line for line in watcher_lines if line["message"].startswith("queued ")]
    assert {line["job_id"] for line in queued} == job_ids
    assert not any("job_id" in line for line in watcher_lines if line["message"].startswith("watching "))
