"""The catalog's PostgreSQL restarting while a worker is in the middle of a job.

The shared server at 127.0.0.1:5432 serves other tests and people, so this test runs a
private PostgreSQL (initdb + pg_ctl from /usr/lib/postgresql/*/bin, as the `postgres` user
when we are root, since PostgreSQL refuses to run as root) and restarts that one.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aic_worker.catalog.engine import create_catalog_engine
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import JobState
from tests.jobs.conftest import (
    BIG,
    RedisServer,
    Services,
    all_finished,
    free_port,
    jobs,
    wait_for,
    write_photos,
)
from tests.jobs.test_worker_process import add_folder


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, in a folder of its own."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.home = Path(tempfile.mkdtemp(prefix="aic-pg-"))
        self.data = self.home / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.home, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True,
                       timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.home / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


def test_database_restart_during_a_job(
    private_postgres: PrivatePostgres, broker: RedisServer, model_file: Path, tmp_path: Path
) -> None:
    engine = create_catalog_engine(private_postgres.url)
    upgrade(engine)
    services = Services(tmp_path, private_postgres.url, broker, model_file)
    [big] = write_photos(services.watched, 1, size=BIG, prefix="big")
    write_photos(services.watched, 1, prefix="small")
    # A lease that outlasts the outage: the job must survive it, not be reaped and redone.
    worker = services.start_worker(AIC_LEASE_SECONDS="60", AIC_DB_RETRY_SECONDS="45")
    try:
        add_folder(services)
        worker.wait_ready()
        wait_for(lambda: list(services.archive.glob(".*.tmp")), 120, "the big job to stage its file", 0.01)
        private_postgres.stop()  # while the staged file is decoded and measured
        wait_for(lambda: "database unavailable" in worker.output() or "database away" in worker.output(),
                 60, "the worker to meet the outage")
        private_postgres.start()
        wait_for(all_finished(engine, 2), 120, "the jobs to finish once the database is back")
        found = {j.parameters["path"]: j for j in jobs(engine)}
        assert all(j.state is JobState.DONE for j in found.values()), [j.last_error for j in found.values()]
        assert found[str(big)].attempts == 1  # the work done before the outage was committed, not redone
        assert sorted(p.name for p in services.archive.iterdir()) == ["big00.png.aic", "small00.png.aic"]
    finally:
        worker.stop()
        engine.dispose()
