"""Real services for tests, one fresh per test where it holds state.

Catalogs: a real SQLite file and a real PostgreSQL. PostgreSQL is the one at
127.0.0.1:5432, database `test` (override with AIC_TEST_POSTGRES_URL). Each test gets its
own schema there (search_path), dropped afterwards. If PostgreSQL is unreachable the tests
fail: a skipped backend is an untested one.

Brokers and workers: a private `redis-server` (PrivateRedis, on a free port) lets a test
FLUSHALL without touching the shared one at 127.0.0.1:6379; without the binary the shared
server is used, database AIC_TEST_REDIS_DB (default 13), and "flushing" empties only that
database. `services` gives a test a migrated catalog, an empty broker, folders, a tiny
random model (AIC_MODEL) and real `aic-worker` / `aic-admin` processes pointed at them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import redis
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from aic_worker.admin.private_redis import PrivateRedis
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import Job, JobState
from bench.tiny_model import write_tiny_model

POSTGRES_URL = os.environ.get("AIC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL's URL, after checking that it answers."""
    try:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {error}", pytrace=False)
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty catalog database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq_dsn(base), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq_dsn(base), autocommit=True) as connection:
            connection.execute("SET lock_timeout = '20s'")
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    """An engine on an empty catalog (no schema yet)."""
    engine = create_catalog_engine(catalog_url)
    yield engine
    engine.dispose()


@pytest.fixture
def catalog(engine: Engine) -> Engine:
    """An engine on a catalog migrated to head."""
    upgrade(engine)
    return engine


@pytest.fixture
def session(catalog: Engine) -> Iterator[Session]:
    with session_factory(catalog)() as session:
        yield session


RATIO = 24  # reachable by the small test model on images of 64x64 and up
# A photo whose job stays staged (verified: decoded, measured) long enough for a test to
# catch it mid-job and kill something; the codec got faster, so it must be big.
BIG = 3072


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    def __init__(self, url: str, private: bool) -> None:
        self.url = url
        self.private = private
        self.client = redis.Redis.from_url(url)

    def flush(self) -> None:
        """FLUSHALL on the private server; on the shared one only our database."""
        if self.private:
            self.client.flushall()
        else:
            self.client.flushdb()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        db = os.environ.get("AIC_TEST_REDIS_DB", "13")
        yield RedisServer(f"redis://127.0.0.1:6379/{db}", private=False)
        return
    private = PrivateRedis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield RedisServer(private.start(), private=True)
    finally:
        private.stop()


@pytest.fixture
def broker(redis_server: RedisServer) -> RedisServer:
    """The test's broker, emptied."""
    redis_server.flush()
    return redis_server


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights for a tiny model (32 latent channels): fast, and a real safetensors file
    (the one the chaos and fuzz benches use too)."""
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def photo(size: int = 96, seed: int = 0) -> Image.Image:
    """Gradients plus noise: something like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([xx / size, yy / size, (xx + yy) / (2 * size)], axis=-1) * 200
    base += rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def write_photos(folder: Path, n: int, size: int = 96, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:02d}.png"
        photo(size, seed=i + size).save(path)
        paths.append(path)
    return paths


class Services:
    """Everything a worker test needs, and the environment that points processes at it."""

    def __init__(self, root: Path, catalog_url: str, broker: RedisServer, model_file: Path) -> None:
        self.root = root
        self.catalog_url = catalog_url
        self.broker = broker
        self.watched = root / "in"
        self.archive = root / "archive"
        self.env = {
            **os.environ,
            "AIC_HOME": str(root / "home"),
            "AIC_DATABASE_URL": catalog_url,
            "AIC_BROKER_URL": broker.url,
            "AIC_MODEL": str(model_file),
            "AIC_ARCHIVE": str(self.archive),
            "AIC_DEVICE": "cpu",
            "AIC_LEASE_SECONDS": "6",  # renewed every 2 s; generous for a loaded 2-core machine
            "AIC_REAP_SECONDS": "1",
            "AIC_DB_RETRY_SECONDS": "4",  # shorter than the lease, as it must be
            "AIC_MIN_PSNR": "5",  # the tiny random model reaches about 7 dB
            "AIC_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        self.workers: list[WorkerProcess] = []

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `aic-admin ARGS` as a separate process, as an operator would."""
        result = subprocess.run(
            [sys.executable, "-m", "aic_worker.admin.main", *args],
            env=self.env, capture_output=True, text=True, timeout=120,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def start_worker(self, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(self.root / f"worker{len(self.workers)}.log", {**self.env, **extra_env})
        self.workers.append(worker)
        return worker


class WorkerProcess:
    """`aic-worker` in its own process group, so kill -9 takes the parent and its pool alike."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aic_worker.jobs.main", "--concurrency", "1", "--loglevel", "INFO",
             "--hostname", f"test{os.getpid()}-{time.monotonic_ns()}@%h"],
            env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        wait_for(lambda: " ready." in self.output() or self.process.poll() is not None, timeout,
                 "the worker to start")
        assert self.process.poll() is None, self.output()

    def kill(self) -> None:
        """kill -9 of the whole worker: parent, pool children, threads."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._log_file.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log_file.close()


@pytest.fixture
def services(
    tmp_path: Path, catalog: Engine, catalog_url: str, broker: RedisServer, model_file: Path
) -> Iterator[Services]:
    """A migrated catalog, an empty broker, folders, and the processes started, stopped afterwards."""
    found = Services(tmp_path, catalog_url, broker, model_file)
    try:
        yield found
    finally:
        for worker in found.workers:
            worker.stop()


def jobs(engine: Engine) -> list[Job]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def all_finished(engine: Engine, n: int) -> Callable[[], bool]:
    def check() -> bool:
        found = jobs(engine)
        return len(found) == n and all(j.state in (JobState.DONE, JobState.QUARANTINED) for j in found)

    return check


def session_on(engine: Engine) -> Session:
    return session_factory(engine)()
