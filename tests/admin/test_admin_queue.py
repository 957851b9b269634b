"""`aic-admin retry` and `recompress` through a real broker to a real `aic-worker` process."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, func, select

from aic_worker.catalog.models import ArchiveVersion, JobKind, JobState
from tests.conftest import RATIO, Services, all_finished, jobs, session_on, wait_for, write_photos


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_retry_and_recompress_through_the_workers(services: Services, catalog: Engine) -> None:
    photos = write_photos(services.watched, 3)
    services.admin("add", str(services.watched), "--ratio", str(RATIO), "--archive", str(services.archive))
    aside = services.root / "aside.png"
    photos[2].rename(aside)  # gone when its job runs: quarantined
    worker = services.start_worker()
    worker.wait_ready()
    wait_for(all_finished(catalog, 3), 120, "the compress jobs")
    assert [j.state for j in jobs(catalog)] == [JobState.DONE, JobState.DONE, JobState.QUARANTINED]

    aside.rename(photos[2])
    retried = services.admin("retry", "--quarantined")
    assert "1 job(s) pending again; 1 sent" in retried.stdout
    wait_for(all_finished(catalog, 3), 120, "the retried job")
    assert all(j.state is JobState.DONE for j in jobs(catalog)), [j.last_error for j in jobs(catalog)]
    assert "0 job(s) pending again" in services.admin("retry").stdout

    result = services.admin("recompress", "--ratio", "64", "--all", "--json")
    assert "sending the jobs to 1 worker(s)" in result.stderr
    report = json.loads(result.stdout)
    assert report["done"] == 3 and report["failed"] == 0 and report["bytes_saved"] > 0
    recompress_jobs = [j for j in jobs(catalog) if j.kind is JobKind.RECOMPRESS]
    assert len(recompress_jobs) == 3 and all(j.state is JobState.DONE for j in recompress_jobs)
    with session_on(catalog) as session:
        counts = session.execute(
            select(ArchiveVersion.source_id, func.count()).group_by(ArchiveVersion.source_id)
        )
        assert sorted(n for _, n in counts) == [2, 2, 2]
        current = session.scalars(select(ArchiveVersion).where(ArchiveVersion.superseded_by.is_(None))).all()
        assert all(v.target_ratio == 64 and v.achieved_ratio >= 64 for v in current)
