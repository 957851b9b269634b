"""Publishing through the real broker (Redis, via aic_worker.jobs.queue), through an outage."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aic_worker.admin.private_redis import PrivateRedis
from aic_worker.config import WorkerConfig
from aic_worker.jobs.queue import make_app, publish, queued_job_ids
from tests.watch.conftest import Catalog, Harness, png, wait_until

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of our own, so the test can take the broker down and bring it back."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: a broker outage can't be staged")
    server = PrivateRedis(binary, tmp_path)
    yield server
    server.stop()


def test_jobs_are_published_to_the_broker_and_wait_out_its_outage(
    harness: Harness, view: Catalog, private_redis: PrivateRedis
) -> None:
    app = make_app(WorkerConfig.from_env({"AIC_BROKER_URL": private_redis.url}))
    harness.start(publish=lambda job_id: publish(job_id, celery_app=app))
    private_redis.start()
    harness.drop("first.png", png(1))
    (first,) = wait_until(view.jobs)
    wait_until(lambda: queued_job_ids(app) == {first.id})

    private_redis.stop()  # the broker goes away; jobs still land in the catalog
    for i in range(2, 5):
        harness.drop(f"img{i}.png", png(i))
    wait_until(lambda: view.job_count() == 4)
    time.sleep(0.5)
    private_redis.start()  # an empty broker: the first message is gone with the old server
    later = {job.id for job in view.jobs()} - {first.id}
    wait_until(lambda: queued_job_ids(app) == later, timeout=30)
