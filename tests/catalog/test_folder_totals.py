"""folder_totals (revision 0006) against a full pass over the catalog, after changes made by
the project's own writers and by hand in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import BigInteger, Engine, Integer, case, cast, func, select, text
from sqlalchemy.orm import Session

from aic_worker.catalog import lease
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, JobKind, Source
from aic_worker.catalog.overview import CURRENT, PRIMARY, joined
from aic_worker.catalog.reports import folder_groups, stats_report
from aic_worker.catalog.sources import (
    mark_path_removed,
    quarantine_source,
    record_archive_version,
    record_source,
)
from aic_worker.store.retention import retire_superseded
from tests.catalog.conftest import MTIME, sha


def full_pass(session: Session) -> dict[str, Any]:
    """The by-folder figures as stats computed them before 0006: every source joined to its
    primary path and current version, grouped by folder (raw rounded as 0006 rounds it)."""
    product = CURRENT.achieved_ratio * CURRENT.bytes + 0.5
    sqlite = session.get_bind().dialect.name == "sqlite"
    rounded = cast(product, Integer) if sqlite else cast(func.floor(product), BigInteger)
    rows = session.execute(
        joined(
            select(
                PRIMARY.folder,
                func.count(),
                func.count(CURRENT.id),
                func.coalesce(func.sum(case((CURRENT.id.is_not(None), Source.size))), 0),
                func.coalesce(func.sum(CURRENT.bytes), 0),
                func.coalesce(func.sum(rounded), 0),
            )
        ).group_by(PRIMARY.folder)
    ).all()
    on_disk = session.scalar(
        select(func.coalesce(func.sum(ArchiveVersion.bytes), 0)).where(ArchiveVersion.removed_at.is_(None))
    )
    folders = {
        folder: {"sources": n, "files": files, "bytes_in": int(size), "bytes_out": int(out),
                 "raw": int(raw)}
        for folder, n, files, size, out, raw in rows
    }
    return {"folders": folders, "bytes_on_disk": int(on_disk)}


def kept(session: Session) -> dict[str, Any]:
    """The same figures as stats_report gives them, from folder_totals."""
    stats = stats_report(session)
    raw = {group["folder"]: group["raw"] for group in folder_groups(session)}
    folders = {
        f["folder"]: {"sources": f["sources"], "files": f["files"], "bytes_in": f["bytes_in"],
                      "bytes_out": f["bytes_out"], "raw": raw[f["folder"]]}
        for f in stats["folders"]
    }
    assert stats["sources"] == sum(f["sources"] for f in folders.values()) == sum(stats["states"].values())
    return {"folders": folders, "bytes_on_disk": stats["bytes_on_disk"]}


def assert_exact(session: Session) -> None:
    session.flush()
    assert kept(session) == full_pass(session)


def _add(session: Session, name: str, path: str) -> Source:
    folder = path.rsplit("/", 1)[0]
    return record_source(session, path=path, folder=folder, sha256=sha(name), size=5000 + len(name),
                         mtime=MTIME, width=40, height=25, mode="RGB")


def _archive(session: Session, source: Source, model_id: str, ratio: float, name: str) -> ArchiveVersion:
    job, _ = enqueue_job(session, JobKind.RECOMPRESS, source.id, target_ratio=ratio, model_id=model_id)
    assert lease.claim(session, "w", job_id=job.id)
    version = record_archive_version(
        session, source_id=source.id, path=f"/archive/{name}.aic", bytes=int(3000 / ratio) + len(name),
        sha256=sha(name + ".aic"), target_ratio=ratio, achieved_ratio=3000 / (int(3000 / ratio) + len(name)),
        model_id=model_id, psnr=31.5, ms_ssim=0.97,
    )
    assert lease.complete(session, job.id, "w")
    return version


def test_totals_follow_every_writer_and_hand_edits(catalog: Engine, session: Session, model_id: str) -> None:
    a = _add(session, "a", "/w/one/a.png")
    b = _add(session, "b", "/w/one/b.png")
    c = _add(session, "c", "/w/two/c.png")
    assert_exact(session)
    for source, ratio in ((a, 16), (b, 24), (c, 32)):
        _archive(session, source, model_id, ratio, f"{source.id}-{ratio}")
    session.commit()
    assert_exact(session)
    _archive(session, a, model_id, 48, "a-recompressed")  # supersedes a's first version
    _archive(session, a, model_id, 64, "a-again")
    assert_exact(session)
    retire_superseded(session, a.id, keep=1, intact=lambda version: True)  # prune: both older ones
    assert_exact(session)
    _add(session, "b", "/w/two/b-copy.png")  # b's second path, in another folder
    mark_path_removed(session, "/w/one/b.png")  # b now counts under /w/two
    assert_exact(session)
    quarantine_source(session, c.id, "unreadable")
    d = _add(session, "d", "/w/three/d.png").id
    quarantine_source(session, d, "not an image")
    _add(session, "d2", "/w/three/d.png")  # the path holds other content: d is forgotten (deleted)
    assert session.scalar(select(func.count()).where(Source.id == d)) == 0
    assert_exact(session)
    if catalog.dialect.name == "postgresql":  # what the triggers do every 256 rows, to each folder now
        folders = "SELECT DISTINCT folder FROM folder_totals"
        session.execute(text(f"SELECT aic_fold_folder_totals(folder) FROM ({folders}) AS f"))
        assert_exact(session)
    session.commit()

    # By hand, as an operator might: several rows of one source in one statement, moves
    # between sources, a deletion that cascades, a source with no path.
    def sql(statement: str, **values: Any) -> None:
        session.execute(text(statement), values)

    sql("UPDATE source_paths SET removed_at = :t", t=MTIME)  # every path removed: the first counts
    assert_exact(session)
    sql("UPDATE source_paths SET removed_at = NULL, folder = '/w/moved' WHERE folder = '/w/two'")
    sql("UPDATE sources SET size = size * 3")
    sql("UPDATE archive_versions SET bytes = bytes + 7, achieved_ratio = achieved_ratio / 2")
    assert_exact(session)
    sql("UPDATE source_paths SET source_id = :a WHERE source_id = :b", a=a.id, b=b.id)
    sql("UPDATE archive_versions SET superseded_by = id WHERE source_id = :c", c=c.id)
    assert_exact(session)
    sql("INSERT INTO sources (sha256, size, first_seen_at, state) VALUES (:s, 9, :t, 'new')",
        s=sha("no path"), t=MTIME)
    e = _add(session, "e", "/w/gone/e.png")
    session.flush()
    sql("DELETE FROM sources WHERE id = :e", e=e.id)  # its path goes with it
    sql("UPDATE archive_versions SET removed_at = NULL")
    assert_exact(session)
    session.commit()
    assert_exact(session)
    assert None in kept(session)["folders"]  # the source without a path


def test_two_transactions_opening_a_folder_at_once_are_both_counted(catalog: Engine, model_id: str) -> None:
    """On PostgreSQL neither waits for the other (each appends its rows); on SQLite the
    second waits for the first. Either way the sums by folder are exact."""
    sessions = session_factory(catalog)
    with sessions() as first, sessions() as second:
        _add(first, "x", "/w/new/x.png")
        first.flush()
        if catalog.dialect.name == "postgresql":
            _add(second, "y", "/w/new/y.png")
            second.flush()
            second.commit()
        first.commit()
    with sessions() as session:
        if catalog.dialect.name == "sqlite":
            _add(session, "y", "/w/new/y.png")
            session.commit()
        assert kept(session)["folders"]["/w/new"]["sources"] == 2
        assert_exact(session)


def test_a_commit_waiting_on_a_folder_move_of_its_source_goes_through(catalog: Engine, model_id: str) -> None:
    """The watcher moves a source to another folder (its first path removed) while a worker
    commits a version of that source: the worker waits on the source's figures and must then
    find them, not a deleted row (a second row was a unique violation, and the job failed)."""
    if catalog.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing waits inside a statement")
    sessions = session_factory(catalog)
    with sessions() as session:
        source = _add(session, "m", "/w/one/m.png")
        _add(session, "m", "/w/two/m.png")
        session.commit()
        source_id = source.id
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with sessions() as session:
                _archive(session, session.get(Source, source_id), model_id, 16, "m-16")
                session.commit()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    with sessions() as watcher:
        mark_path_removed(watcher, "/w/one/m.png")
        watcher.flush()
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()   # waiting on the source's figures
        watcher.commit()
    thread.join(30)
    assert not failures, failures
    with sessions() as session:
        assert kept(session)["folders"]["/w/two"]["files"] == 1
        assert_exact(session)
