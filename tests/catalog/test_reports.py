"""catalog/reports.py in SQL: every state, paging, streaming and the aggregates, on both backends."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from aic_worker.admin.selection import Selection
from aic_worker.catalog import lease
from aic_worker.catalog.engine import reading, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, Source
from aic_worker.catalog.overview import STATES, SourceRow, joined, source_rows
from aic_worker.catalog.reports import (
    RECENT_FAILURES,
    _where,
    iter_quarantined,
    iter_source_records,
    quarantine_cursor,
    quarantine_report,
    source_details,
    source_page,
    stats_report,
    status_report,
)
from aic_worker.catalog.sources import (
    mark_path_removed,
    quarantine_source,
    record_archive_version,
    record_source,
)
from tests.catalog.conftest import sha

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _archive(session: Session, source: Source, model_id: str, ratio: float, name: str) -> ArchiveVersion:
    job, _ = enqueue_job(session, JobKind.COMPRESS, source.id, target_ratio=24, model_id=model_id)
    assert lease.claim(session, "w", job_id=job.id, now=T0)
    version = record_archive_version(
        session, source_id=source.id, path=f"/archive/{name}.aic", bytes=1000, sha256=sha(name + ".aic"),
        target_ratio=24, achieved_ratio=ratio, model_id=model_id, psnr=30 + ratio / 10, ms_ssim=0.97,
    )
    assert lease.complete(session, job.id, "w", now=T0)
    return version


def _add(session: Session, name: str, folder: str, file: str) -> Source:
    return record_source(
        session, path=f"{folder}/{file}", folder=folder, sha256=sha(name), size=3000 + len(name), mtime=T0,
        width=40, height=25, mode="RGB",
    )


FOLDERS = [
    ("done", "/w/a"), ("moved", "/w/a"), ("pending", "/w/b"), ("running", "/w/b"), ("failed", "/w/a/sub"),
    ("quarantined", "/w/ab"), ("damaged", "/w/a"), ("new", "/w/b"), ("redone", "/w/a"),
]


@pytest.fixture
def archive(session: Session, model_id: str) -> dict[str, int]:
    """One source in each state, in several folders; returns the source ids by name."""
    ids: dict[str, int] = {}
    for n, (name, folder) in enumerate(FOLDERS):
        source = _add(session, name, folder, f"{name}.png")
        ids[name] = source.id
        if name in ("done", "moved", "failed", "damaged", "redone", "running"):
            _archive(session, source, model_id, 10.0 * (n + 1), name)
        if name in ("pending", "running", "failed", "redone"):
            job, _ = enqueue_job(session, JobKind.RECOMPRESS, source.id, target_ratio=96, model_id=model_id)
            if name in ("running", "failed", "redone"):
                assert lease.claim(session, "w", job_id=job.id, now=T0)
            if name == "failed":
                lease.fail(session, job.id, "w", "disk full", now=T0)
            if name == "redone":
                lease.complete(session, job.id, "w", now=T0)
    quarantine_source(session, ids["quarantined"], "not an image")
    session.execute(
        update(ArchiveVersion).where(ArchiveVersion.source_id == ids["damaged"]).values(damaged_at=T0)
    )
    # "moved": found again under /w/c, then its first path went away: /w/c is the path it is known by
    _add(session, "moved", "/w/c", "moved-again.png")
    mark_path_removed(session, "/w/a/moved.png")
    session.commit()
    return ids


def test_every_state_in_sql_matches_the_rows(session: Session, archive: dict[str, int]) -> None:
    records = {r["id"]: r for r in source_page(session, limit=None)}
    expected = {name: name for name in archive} | {"moved": "done", "new": "pending", "redone": "done"}
    assert {name: records[i]["state"] for name, i in archive.items()} == expected
    rows: dict[int, SourceRow] = {row.source.id: row for row in source_rows(session)}
    assert {i: row.state for i, row in rows.items()} == {i: r["state"] for i, r in records.items()}
    assert records[archive["moved"]]["source_path"] == "/w/c/moved-again.png"
    assert records[archive["failed"]]["reason"] == "disk full"
    assert records[archive["running"]]["target_ratio"] == 96  # the unfinished job's ratio
    assert records[archive["done"]]["kind"] == "aic" and records[archive["new"]]["kind"] is None
    for state in STATES:
        assert [r["id"] for r in source_page(session, state=state, limit=None)] == sorted(
            i for i, r in records.items() if r["state"] == state
        ), state


def test_pages_and_the_stream_agree(session: Session, archive: dict[str, int]) -> None:
    everything = source_page(session, limit=None)
    assert list(iter_source_records(session)) == everything
    assert source_page(session, limit=3, offset=2) == everything[2:5]
    assert source_page(session, limit=3, after_id=everything[4]["id"]) == everything[5:8]
    assert source_page(session, q="DAMAGED") == [r for r in everything if r["id"] == archive["damaged"]]
    assert source_page(session, q="a/moved.p") == []  # a path of its, but not the one it is known by
    under_a = Selection(folder=Path("/w/a")).conditions()
    assert {r["id"] for r in source_page(session, conditions=under_a)} == {
        archive[n] for n in ("done", "moved", "failed", "damaged", "redone")
    }  # /w/a/sub is under /w/a; /w/ab is not
    assert [r["id"] for r in iter_source_records(session, conditions=under_a, state="failed")] == [
        archive["failed"]
    ]
    details = source_details(session, archive["damaged"])
    assert details is not None and details["state"] == "damaged" and details["versions"][0]["damaged_at"]
    assert source_details(session, 10**6) is None


def test_stats_and_quarantine_are_sums_of_the_rows(session: Session, archive: dict[str, int]) -> None:
    stats = stats_report(session)
    records = source_page(session, limit=None)
    assert stats["sources"] == len(records) == sum(stats["states"].values())
    assert stats["states"] == {s: sum(r["state"] == s for r in records) for s in STATES}
    archived = [r for r in records if r["archive_bytes"] is not None]
    assert stats["files"] == len(archived) and stats["bytes_out"] == 1000 * len(archived)
    assert stats["bytes_in"] == sum(r["source_bytes"] for r in archived)
    ratios = sorted(r["achieved_ratio"] for r in archived)
    assert (stats["ratio"]["min"], stats["ratio"]["median"], stats["ratio"]["max"]) == (
        ratios[0], ratios[(len(ratios) + 1) // 2 - 1], ratios[-1]
    )
    assert sum(b["files"] for b in stats["ratio_histogram"]) == len(archived)
    assert stats["bytes_on_disk"] == 1000 * len(archived)
    folders = {f["folder"]: f for f in stats["folders"]}
    assert sum(f["sources"] for f in folders.values()) == len(records)
    assert folders["/w/c"]["sources"] == 1  # a source counts in the folder of its primary path
    report = quarantine_report(session)
    assert [s["id"] for s in report["sources"]] == [archive["quarantined"]]
    assert report["jobs"] == []


def test_a_catalog_without_archives_has_empty_figures(session: Session) -> None:
    stats = stats_report(session)
    assert (stats["sources"], stats["files"], stats["ratio"], stats["psnr"], stats["folders"]) == (
        0, 0, None, None, []
    )
    assert list(iter_source_records(session)) == [] == source_page(session)


def test_on_sqlite_a_long_read_does_not_keep_a_writer_waiting(catalog: Engine, model_id: str) -> None:
    if catalog.dialect.name != "sqlite":
        pytest.skip("PostgreSQL readers never block writers")
    with session_factory(reading(catalog))() as reader:
        reader.execute(select(Source.id)).all()  # the read transaction is open from here on
        committed = threading.Event()

        def write() -> None:
            with session_factory(catalog)() as writer, writer.begin():
                writer.execute(text("UPDATE models SET path = path"))
            committed.set()

        started = time.monotonic()
        writer = threading.Thread(target=write)
        writer.start()
        assert committed.wait(10), "the writer waited on a read-only transaction"
        assert time.monotonic() - started < 5
        writer.join()


def _plan(session: Session, statement: str) -> str:
    if session.get_bind().dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {statement}")))
    session.execute(text("SET LOCAL enable_seqscan = off"))  # a test catalog is tiny: judge the index's use
    return " ".join(row[0] for row in session.execute(text(f"EXPLAIN {statement}")))


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("SELECT count(*) FROM jobs WHERE state = 'done' AND finished_at > '2026-11-01'", "ix_jobs_finished"),
        ("SELECT id FROM sources WHERE state = 'quarantined'", "ix_sources_state"),
        ("SELECT count(*) FROM archive_versions WHERE created_at >= '2026-11-27'",
         "ix_archive_versions_created_at"),  # the dashboard's per-hour chart (pages.archived_per_hour)
        ("SELECT source_id FROM source_paths WHERE folder = '/w'", "ix_source_paths_folder"),
        ("SELECT achieved_ratio FROM archive_versions WHERE superseded_by IS NULL ORDER BY achieved_ratio"
         " LIMIT 1 OFFSET 1", "ix_archive_versions_current_achieved_ratio"),
    ],
)
def test_report_filters_are_index_backed(session: Session, statement: str, index: str) -> None:
    plan = _plan(session, statement)
    state_first = ("ix_jobs_state_updated", "ix_jobs_state_id")
    if index == "ix_jobs_finished" and any(i in plan for i in state_first) and "Index Cond" in plan:
        return  # on an empty table PostgreSQL's indexes that lead with state cost the same (a
        # catalog of 100,000 jobs takes ix_jobs_finished for both columns: docs/scale.md)
    assert index in plan


def test_a_quarantine_page_of_jobs_is_read_in_index_order(session: Session) -> None:
    """jobs (state, id), revision 0006: the page's jobs come in id order, nothing sorted."""
    plan = _plan(session, "SELECT id FROM jobs WHERE state = 'quarantined' AND id > 5 ORDER BY id LIMIT 101")
    assert "ix_jobs_state_id" in plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan


def test_a_folder_prefix_is_an_index_range(session: Session) -> None:
    conditions = Selection(folder=Path("/w/a")).conditions()
    compiled = select(Source.id).where(*conditions).compile(
        session.get_bind(), compile_kwargs={"literal_binds": True}
    )
    index = "sqlite_autoindex_source_paths" if session.get_bind().dialect.name == "sqlite" else "path_pattern"
    assert index in _plan(session, str(compiled))


def test_quality_measured_against_a_previous_version_is_named_and_kept_apart(
    session: Session, model_id: str
) -> None:
    """A re-encode made without the original measured its PSNR against the version it came from
    (reference_version_id); once that version is gone, nothing may present it as the original's."""
    kept = _archive(session, _add(session, "kept", "/w", "kept.png"), model_id, 16.0, "kept")
    source = _add(session, "gone", "/w", "gone.png")
    first = _archive(session, source, model_id, 16.0, "gone")
    again = record_archive_version(
        session, source_id=source.id, path="/archive/gone.2.aic", bytes=500, sha256=sha("gone.2"),
        target_ratio=64, achieved_ratio=64.0, model_id=model_id, psnr=45.0, ms_ssim=0.99,
    )
    again.reference_version_id = first.id
    first.removed_at = T0  # keep-versions 1: the reference's file is deleted
    session.commit()

    records = {r["id"]: r for r in source_page(session, limit=None)}
    assert (records[source.id]["quality_reference"], records[source.id]["reference_version_id"]) == (
        f"version {first.id}", first.id
    )
    plain = records[kept.source_id]
    assert (plain["quality_reference"], plain["reference_version_id"]) == ("original", None)
    assert list(iter_source_records(session)) == list(records.values())
    details = source_details(session, source.id)
    assert details is not None
    assert [(v["reference_version_id"], v["quality_reference"]) for v in details["versions"]] == [
        (None, "original"), (first.id, f"version {first.id}")
    ]
    stats = stats_report(session)
    assert stats["psnr"] is not None and stats["psnr"]["max"] == kept.psnr  # 45 dB is not against an original
    assert stats["psnr_vs_previous_version"] is not None
    assert stats["psnr_vs_previous_version"]["median"] == 45.0


def test_quarantine_pages_walk_every_entry_once(session: Session) -> None:
    """quarantine_report pages by id like ls (100,000 quarantined jobs took the API 29 s in
    one document); the pages put together are the stream, and the totals count them all."""
    sources = [_add(session, f"q{n}", "/w", f"q{n}.png") for n in range(5)]
    for source in sources[:3]:
        quarantine_source(session, source.id, "not an image")
    for source in sources:
        for kind in (JobKind.VERIFY, JobKind.RESTORE):
            job, _ = enqueue_job(session, kind, source.id)
            job.state, job.quarantine_reason, job.finished_at = JobState.QUARANTINED, "gone", T0
    enqueue_job(session, JobKind.VERIFY, sources[0].id, parameters={"other": 1})  # pending: not listed
    session.commit()

    pages, after = [], None
    while True:
        page = quarantine_report(session, limit=4, after=after)
        pages.append(page)
        if page["next_after"] is None:
            break
        after = quarantine_cursor(page["next_after"])
    assert len(pages) == 3 and all(p["source_count"] == 3 and p["job_count"] == 10 for p in pages)
    assert [len(p["sources"]) for p in pages] == [3, 0, 0] and [len(p["jobs"]) for p in pages] == [4, 4, 2]
    all_sources, all_jobs = iter_quarantined(session)
    assert [s for p in pages for s in p["sources"]] == list(all_sources)
    jobs = [j for p in pages for j in p["jobs"]]
    assert jobs == list(all_jobs)
    assert jobs[0] | {"job_id": 0} == {
        "job_id": 0, "kind": "verify", "source_id": sources[0].id, "source_path": "/w/q0.png", "attempts": 0,
        "since": jobs[0]["since"], "reason": "gone",
    }
    assert quarantine_report(session)["next_after"] is None


def test_recent_failures_are_read_in_index_order(session: Session) -> None:
    """status' latest failed and quarantined jobs come from ix_jobs_state_updated, newest first
    across both states, without sorting every failed job (revision 0005)."""
    source = _add(session, "f", "/w", "f.png")
    for n in range(2 * RECENT_FAILURES):
        job, _ = enqueue_job(session, JobKind.VERIFY, source.id, parameters={"n": n})
        job.state = JobState.FAILED if n % 3 else JobState.QUARANTINED
        job.last_error = f"error {n}"
    session.flush()
    # updated_at is set by the ORM on every UPDATE: set the test's times in SQL
    ids = session.scalars(select(Job.id).where(Job.source_id == source.id).order_by(Job.id)).all()
    for n, job_id in enumerate(ids):
        session.execute(update(Job).where(Job.id == job_id).values(updated_at=T0 + timedelta(minutes=n)))
    session.commit()
    failures = status_report(session, now=T0)["recent_failures"]
    newest = reversed(range(RECENT_FAILURES, 2 * RECENT_FAILURES))
    assert [f["reason"] for f in failures] == [f"error {n}" for n in newest]
    plan = _plan(session, "SELECT id FROM jobs WHERE state = 'quarantined' ORDER BY updated_at DESC LIMIT 10")
    assert "ix_jobs_state_updated" in plan and "TEMP B-TREE" not in plan and "Sort" not in plan


def test_a_search_by_path_part_uses_the_trigram_index_on_postgresql(session: Session) -> None:
    """The dashboard's `q` (ILIKE '%part%') reads a pg_trgm GIN index where the server has pg_trgm
    (this project's PostgreSQL does; revision 0005), not every path."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite reads every path for a substring")
    page = joined(select(Source.id)).where(*_where([], None, "photo"))  # what source_page sends
    statement = page.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    assert "ix_source_paths_path_trigram" in _plan(session, str(statement))

