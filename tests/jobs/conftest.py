"""The worker tests' services live in tests/conftest.py, shared with the admin tests; the
in-process harness (a real catalog and files, jobs run without a broker) lives here."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from aic_worker.admin.private_redis import free_port
from aic_worker.catalog import lease
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind
from aic_worker.catalog.sources import record_source
from aic_worker.codec_cache import CodecCache
from aic_worker.jobs.parameters import CompressParameters
from aic_worker.jobs.pipeline import RUNNERS, JobContext
from aic_worker.store import archive
from tests.conftest import (
    BIG,
    RATIO,
    RedisServer,
    Services,
    WorkerProcess,
    all_finished,
    jobs,
    photo,
    session_on,
    wait_for,
    write_photos,
)

__all__ = [
    "BIG",
    "CODECS",
    "RATIO",
    "Harness",
    "RedisServer",
    "Services",
    "WorkerProcess",
    "all_finished",
    "free_port",
    "jobs",
    "photo",
    "session_on",
    "wait_for",
    "write_photos",
]

CODECS = CodecCache("cpu")


class Harness:
    def __init__(self, engine: Engine, model_id: str, root: Path) -> None:
        self.sessions = session_factory(engine)
        self.model_id = model_id
        self.root = root
        self.archive = root / "archive"

    def original(self, relative: str, seed: int = 0, folder: str = "in") -> Path:
        path = self.root / folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(96, seed).save(path)
        return path

    def source(self, path: Path) -> int:
        data = path.read_bytes()
        with self.sessions() as session, session.begin():
            return record_source(
                session, path=str(path), folder=str(path.parent), sha256=hashlib.sha256(data).hexdigest(),
                size=len(data), mtime=datetime.now(UTC), width=96, height=96, mode="RGB",
            ).id

    def job(self, kind: JobKind, source_id: int, *, ratio: float | None = None, **parameters: object) -> Job:
        with self.sessions() as session, session.begin():
            model_id = self.model_id if kind is JobKind.COMPRESS else None
            job, _ = enqueue_job(session, kind, source_id, target_ratio=ratio, model_id=model_id,
                                 parameters=parameters)
            return job

    def compress_job(self, path: Path, folder: str = "in", ratio: float = RATIO, **settings: object) -> Job:
        params = CompressParameters(path, self.root / folder, self.archive, **settings)  # type: ignore[arg-type]
        return self.job(JobKind.COMPRESS, self.source(path), ratio=ratio, **params.to_json())

    def run(self, job: Job, lost: bool = False) -> Job:
        owner = lease.new_owner()
        with self.sessions() as session, session.begin():
            claimed = lease.claim(session, owner, job_id=job.id)
        assert claimed is not None
        event = threading.Event()
        if lost:
            event.set()
        RUNNERS[claimed.kind](JobContext(self.sessions, owner, CODECS, 5.0, event), claimed)
        with self.sessions() as session:
            return session.get(Job, job.id)

    def versions(self) -> list[ArchiveVersion]:
        with self.sessions() as session:
            return list(session.scalars(select(ArchiveVersion).order_by(ArchiveVersion.id)))


@pytest.fixture
def harness(catalog: Engine, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("AIC_MODEL", str(model_file))
    with session_factory(catalog)() as session, session.begin():
        model = register_model(session, archive.file_sha256(model_file), str(model_file), make_default=True)
    return Harness(catalog, model.id, tmp_path)
