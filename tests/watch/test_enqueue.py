"""Identity and idempotence in the catalog, on SQLite and PostgreSQL: nothing is queued twice."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from aic_watch.config import make_config
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.engine import session_factory
from tests.watch.conftest import WINDOW, Catalog, Harness, png, sha256, wait_until


def test_duplicates_and_a_second_watcher_never_make_a_second_job(harness: Harness, view: Catalog) -> None:
    """Two watchers on one folder (two hosts on one share) and content under two names."""
    config = harness.config()
    harness.start(config)
    harness.start(config)
    for i in range(30):
        harness.drop(f"img{i}.png", png(i))
    harness.drop("img0 copy.png", png(0))
    harness.drop("again/img1.png", png(1))
    wait_until(lambda: len(view.paths()) == 32, timeout=30)
    time.sleep(0.5)
    jobs = view.jobs()
    assert len(jobs) == 30
    assert sorted(harness.published) == [job.id for job in jobs]  # each new job published once
    by_sha = {s.sha256: s.id for s in view.sources()}
    paths = view.paths()
    assert paths[str(harness.inbox / "img0 copy.png")] == (by_sha[sha256(png(0))], False)
    assert paths[str(harness.inbox / "again" / "img1.png")] == (by_sha[sha256(png(1))], False)


def test_job_parameters_carry_what_the_worker_needs(harness: Harness, view: Catalog) -> None:
    done = harness.root / "done"
    harness.start(harness.config(harness.folder(policy="move", done_dir=done, recursive=False)))
    path = harness.drop("photo.png", png(1))
    (job,) = wait_until(view.jobs)
    assert job.target_ratio == 16
    assert job.parameters == {
        "path": str(path),
        "folder": str(harness.inbox),
        "archive_root": str(harness.archive),
        "policy": "move",
        "done_dir": str(done),
        "if_bigger": "passthrough",  # the defaults of release 0.4.0 (jobs/parameters.py)
        "keep_versions": 1,
    }
    (source,) = view.sources()
    assert (source.width, source.height, source.mode, source.size) == (16, 16, "RGB", len(png(1)))


def test_aic_model_id_chooses_the_model(harness: Harness, view: Catalog, catalog: Engine) -> None:
    with session_factory(catalog)() as session:
        other = register_model(session, sha256(b"other weights"), "/models/other.safetensors").id
        session.commit()
    config = make_config([harness.folder()], stability_window=WINDOW, env={"AIC_MODEL_ID": other})
    harness.start(config)
    harness.drop("photo.png", png(2))
    (job,) = wait_until(view.jobs)
    assert job.model_id == other


def test_an_unknown_aic_model_id_queues_nothing_and_says_why(harness: Harness, view: Catalog, caplog) -> None:
    config = make_config([harness.folder()], stability_window=WINDOW, env={"AIC_MODEL_ID": sha256(b"nope")})
    harness.start(config)
    harness.drop("photo.png", png(3))
    wait_until(lambda: "is not a model the catalog knows" in caplog.text)
    assert view.job_count() == 0 and view.paths() == {}


def test_jobs_wait_in_the_catalog_while_the_broker_is_down(harness: Harness, view: Catalog) -> None:
    broker_up = False
    sent: list[int] = []

    def publish(job_id: int) -> bool:
        if broker_up:
            sent.append(job_id)
        return broker_up

    harness.start(publish=publish)
    for i in range(5):
        harness.drop(f"img{i}.png", png(i))
    wait_until(lambda: view.job_count() == 5)
    time.sleep(0.5)
    assert sent == []
    broker_up = True
    wait_until(lambda: len(sent) == 5, timeout=10)
    assert sorted(sent) == [job.id for job in view.jobs()]
