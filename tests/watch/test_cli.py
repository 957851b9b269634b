"""`aic-watch` as a process: flags, queueing, a clean stop on SIGTERM, exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aic_worker.admin.private_redis import free_port
from tests.watch.conftest import Catalog, png, wait_until

sqlite_only = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)


def run_watch(args: list[str], catalog_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AIC_DATABASE_URL": catalog_url,
        "AIC_HOME": str(tmp_path / "home"),
        "AIC_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # no broker: jobs wait in the catalog
    }
    env.pop("AIC_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "aic_watch.main", *args], env=env, stderr=subprocess.PIPE, text=True
    )


@sqlite_only
def test_aic_watch_queues_a_dropped_file_and_stops_cleanly_on_sigterm(
    tmp_path: Path, catalog_url: str, catalog: Engine, view: Catalog
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    process = run_watch(
        [str(inbox), "--ratio", "12", "--archive", str(tmp_path / "archive"), "--stability-window", "0.3"],
        catalog_url,
        tmp_path,
    )
    try:
        (inbox / "photo.png").write_bytes(png(1))
        (job,) = wait_until(view.jobs, timeout=30)
        assert job.target_ratio == 12 and job.parameters["path"] == str(inbox / "photo.png")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"queued {inbox / 'photo.png'} as job {job.id}" in stderr
    assert "stopped" in stderr


@sqlite_only
def test_aic_watch_exits_2_on_a_bad_config(tmp_path: Path, catalog_url: str) -> None:
    config = tmp_path / "watch.toml"
    config.write_text("[[folders]]\npath = 'x'\nratio = 8\n")
    process = run_watch(["--config", str(config)], catalog_url, tmp_path)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "missing ['archive']" in stderr


def test_the_watcher_never_imports_torch() -> None:
    code = (
        "import sys, aic_watch.main, aic_worker.jobs.queue\n"
        "from aic_watch.enqueue import Enqueuer\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
