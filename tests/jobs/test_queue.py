"""The Celery app's settings, publishing, and the reaper, against a real Redis and catalog."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from aic_worker.catalog import lease
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import JobKind, JobState, utcnow
from aic_worker.catalog.sources import record_source
from aic_worker.config import WorkerConfig
from aic_worker.jobs.queue import make_app, publish, queue_depth, queued_job_ids
from aic_worker.jobs.reaper import reap_and_republish
from tests.jobs.conftest import RedisServer, free_port


def config(broker_url: str, **env: str) -> WorkerConfig:
    return WorkerConfig.from_env({"AIC_BROKER_URL": broker_url, **env})


def test_settings_that_make_a_killed_worker_lose_nothing() -> None:
    conf = make_app(config("redis://127.0.0.1:1/0", AIC_TASK_TIME_LIMIT="100")).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 100 and conf.task_soft_time_limit == 90
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]


def test_the_tasks_keep_the_names_queued_messages_of_earlier_releases_carry() -> None:
    code = (
        "from aic_worker.jobs.tasks import app;"
        "print(' '.join(sorted(name for name in app.tasks if name.startswith('aic.'))))"
    )
    names = subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True,
                           text=True).stdout.split()
    assert names == ["aic.compress", "aic.recompress", "aic.restore", "aic.verify"]


def test_publish_with_the_broker_away_returns_false_quickly() -> None:
    app = make_app(config(f"redis://127.0.0.1:{free_port()}/0"))
    start = time.monotonic()
    assert publish(1, celery_app=app) is False
    assert time.monotonic() - start < 2


def test_enqueueing_needs_no_torch() -> None:
    code = (
        "import sys, aic_worker.jobs.queue, aic_worker.jobs.reaper, aic_worker.admin.worker_commands;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _add_job(session: Session, n: int) -> int:
    model = register_model(session, "ab" * 32, "/models/m.safetensors", make_default=True)
    source = record_source(session, path=f"/in/{n}.png", folder="/in", sha256=f"{n:064x}", size=1,
                           mtime=utcnow(), width=64, height=64, mode="RGB")
    job, _ = enqueue_job(session, JobKind.COMPRESS, source.id, target_ratio=24, model_id=model.id)
    session.commit()
    return job.id


def test_publish_and_what_the_queue_holds(broker: RedisServer) -> None:
    app = make_app(config(broker.url))
    assert publish(41, celery_app=app) and publish(42, JobKind.VERIFY, celery_app=app)
    broker.client.rpush("aic", b'{"not": "ours"}')
    assert queue_depth(app) == 3
    assert queued_job_ids(app) == {41, 42}


@pytest.mark.parametrize("catalog_url", ["sqlite", "postgresql"], indirect=True)
def test_reaper_publishes_jobs_without_a_message_once_and_reaped_jobs_again(
    broker: RedisServer, session: Session
) -> None:
    app = make_app(config(broker.url))
    sessions = lambda: Session(session.get_bind())  # noqa: E731 - a factory on the test's catalog
    waiting, lost = _add_job(session, 1), _add_job(session, 2)
    assert publish(waiting, celery_app=app)

    assert reap_and_republish(sessions, app) == [lost]  # `waiting` has its message
    assert reap_and_republish(sessions, app) == []  # and now `lost` has one too
    assert queue_depth(app) == 2

    owner = lease.new_owner()
    past = utcnow() - timedelta(minutes=10)
    assert lease.claim(session, owner, job_id=waiting, lease=timedelta(minutes=1), now=past) is not None
    session.commit()
    assert reap_and_republish(sessions, app) == [waiting]  # expired: sent again despite its old message
    session.expire_all()
    assert lease.claim(session, "other", job_id=waiting).state is JobState.RUNNING
