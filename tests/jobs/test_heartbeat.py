"""A worker stops work whose lease it can no longer prove, and never waits for the database past it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.models import Job, JobState
from aic_worker.config import WorkerConfig
from aic_worker.jobs.errors import LeaseLostError, PermanentJobError
from aic_worker.jobs.heartbeat import LeaseHeartbeat
from aic_worker.jobs.pipeline import RUNNERS, JobContext
from aic_worker.store.policy import Policy
from tests.jobs.conftest import CODECS, Harness, free_port

LENGTH = timedelta(seconds=2)


def _away() -> sessionmaker:
    """Sessions on a PostgreSQL that is not there (a free port): every connect fails at once."""
    return session_factory(create_catalog_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
                                                 connect_timeout=2))


def test_a_lease_that_cannot_be_renewed_stops_the_work_before_it_may_expire(harness: Harness) -> None:
    job = harness.compress_job(harness.original("a.png"))
    owner = lease.new_owner()
    with harness.sessions() as session, session.begin():
        assert lease.claim(session, owner, job_id=job.id, lease=LENGTH) is not None
    with LeaseHeartbeat(harness.sessions, job.id, owner, LENGTH) as alive:
        time.sleep(1.5)  # renewed at once, then every third of the lease
        assert not alive.lost.is_set() and alive.left() > 0.5
    started = time.monotonic()
    with LeaseHeartbeat(_away(), job.id, owner, LENGTH) as away:
        assert away.lost.wait(10), "the heartbeat only logged while the database was away"
        assert time.monotonic() - started <= LENGTH.total_seconds()  # before the lease may expire
        assert away.left() <= 0
        with pytest.raises(LeaseLostError):  # its work stops before it places anything
            RUNNERS[job.kind](JobContext(harness.sessions, owner, CODECS, 600.0, away.lost, away.left), job)
        assert [p for p in harness.archive.rglob("*") if p.is_file()] == []
        waited = time.monotonic()
        with pytest.raises(Exception, match="connect"):  # the patience is the lease's, not 600 s
            JobContext(_away(), owner, CODECS, 600.0, away.lost, away.left).db(lambda s: s.connection())
        assert time.monotonic() - waited < 10


def test_the_database_patience_is_shorter_than_the_lease() -> None:
    assert WorkerConfig.from_env({}).db_retry_seconds < WorkerConfig.from_env({}).lease_seconds
    assert WorkerConfig.from_env({"AIC_LEASE_SECONDS": "60"}).db_retry_seconds < 60
    with pytest.raises(ValueError, match="shorter than AIC_LEASE_SECONDS"):
        WorkerConfig.from_env({"AIC_LEASE_SECONDS": "300", "AIC_DB_RETRY_SECONDS": "600"})


def test_the_quality_floor_is_on_by_default_and_configurable() -> None:
    assert WorkerConfig.from_env({}).min_psnr == 20
    assert WorkerConfig.from_env({"AIC_MIN_PSNR": "31.5"}).min_psnr == 31.5
    assert WorkerConfig.from_env({"AIC_MIN_PSNR": "0"}).min_psnr is None


def test_delete_keeps_an_original_whose_archive_misses_the_quality_floor(harness: Harness) -> None:
    """The tiny test model reaches about 7 dB: a floor of 20 dB must keep the original."""
    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    owner = lease.new_owner()
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, owner, job_id=job.id)
    ctx = JobContext(harness.sessions, owner, CODECS, 5.0, threading.Event(), min_psnr=20.0)
    with pytest.raises(PermanentJobError, match=r"below the quality floor of 20 dB .* original kept"):
        RUNNERS[claimed.kind](ctx, claimed)
    assert original.exists() and harness.versions() == []
    assert [p for p in harness.archive.rglob("*") if p.is_file()] == []
    # The same floor with the keep policy: the original stays anyway, so the archive is written.
    kept = harness.original("b.png", seed=3)
    other = harness.compress_job(kept)
    with harness.sessions() as session, session.begin():
        claimed = lease.claim(session, owner, job_id=other.id)
    RUNNERS[claimed.kind](ctx, claimed)
    [version] = harness.versions()
    assert Path(version.path).is_file() and version.psnr < 20 and kept.exists()


def test_a_worker_quarantines_a_delete_job_below_the_floor(harness: Harness) -> None:
    from aic_worker.jobs.runner import claim, execute

    original = harness.original("a.png")
    job = harness.compress_job(original, policy=Policy.DELETE)
    config = WorkerConfig.from_env({"AIC_DB_RETRY_SECONDS": "5"})  # the default floor, 20 dB
    owner = lease.new_owner()
    claimed = claim(harness.sessions, job.id, owner, config)
    assert execute(harness.sessions, CODECS, claimed, owner, config) == "quarantined"
    with harness.sessions() as session:
        stored = session.get(Job, job.id)
    assert stored.state is JobState.QUARANTINED and "quality floor" in stored.quarantine_reason
    assert original.exists()
