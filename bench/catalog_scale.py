"""Catalog scale benchmark: fill a catalog with realistic rows fast, then time every admin
command and every daemon query on it (issue #17; figures in docs/scale.md and the README).

    python bench/catalog_scale.py fill --sources 1000000 --database URL
    python bench/catalog_scale.py time --database URL [--repeat 3]
    python bench/catalog_scale.py explain --database URL

`fill` migrates the catalog to head and bulk-inserts, per source, one path, one done
compress job and one current archive version; one source in 1,000 is quarantined (its job
too, no version). Ten watched folders. Then, on PostgreSQL, VACUUM ANALYZE.

`time` runs each `aic-admin` command as its own process (wall time and that process's
peak RSS, best of --repeat), then times the daemons' own queries in this process (median
of 20 runs: the watcher's record/dedup by sha256 and by path, a worker's claim, a reaper
round, a metrics scrape between full counts and a full count as jobs/backlog.py makes them,
status), and last checks that on SQLite a one-row write commits
promptly while `stats`, `ls --all --json` and a `recompress --dry-run` read. Prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session

from aic_worker.admin.recompress_command import candidates, plan
from aic_worker.admin.selection import Selection
from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, reading, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import (
    ArchiveVersion,
    CodecModel,
    Job,
    JobKind,
    JobState,
    Source,
    SourcePath,
    SourceState,
)
from aic_worker.catalog.reports import (
    iter_source_records,
    quarantine_report,
    source_details,
    source_page,
    stats_report,
    status_report,
)
from aic_worker.catalog.sources import find_path, find_source, record_source
from aic_worker.jobs.backlog import DoneCount, count_jobs

FOLDERS = 10
QUARANTINE_EVERY = 1000
BATCH = 20_000
MODEL_ID = hashlib.sha256(b"catalog_scale model").hexdigest()
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
DAEMON_RUNS = 20
ADMIN = [sys.executable, "-m", "aic_worker.admin.main"]


def _sha(n: int) -> str:
    return hashlib.sha256(n.to_bytes(8, "little")).hexdigest()


def _rows(start: int, stop: int) -> Iterator[tuple[dict[str, Any], ...]]:
    """(source, path, job, version or None) for source ids start..stop-1, the same every run."""
    for i in range(start, stop):
        quarantined = i % QUARANTINE_EVERY == 0
        folder = f"/photos/folder-{i % FOLDERS}"
        seen = EPOCH + timedelta(seconds=i * 7)
        size = 2_000_000 + (i * 7919) % 8_000_000
        width, height = 3000 + i % 97, 2000 + i % 89
        ratio = 24 + (i * 13) % 40 + (i % 7) / 7
        source = {
            "id": i, "sha256": _sha(i), "size": size, "width": width, "height": height, "mode": "RGB",
            "first_seen_at": seen, "state": SourceState.QUARANTINED if quarantined else SourceState.ARCHIVED,
            "reason": "not a readable image" if quarantined else None,
        }
        path = {
            "id": i, "source_id": i, "folder": folder, "path": f"{folder}/{seen:%Y/%m}/IMG_{i:08d}.jpg",
            "mtime": seen, "first_seen_at": seen, "removed_at": None,
        }
        job = {
            "id": i, "kind": JobKind.COMPRESS, "source_id": i, "target_ratio": 32.0, "model_id": MODEL_ID,
            "parameters": {}, "attempts": 1, "created_at": seen, "updated_at": seen, "started_at": seen,
            "finished_at": seen + timedelta(seconds=3),
            "state": JobState.QUARANTINED if quarantined else JobState.DONE,
            "quarantine_reason": "not a readable image" if quarantined else None,
        }
        version = None if quarantined else {
            "id": i, "source_id": i, "path": f"/archive{path['path']}.aic",
            "bytes": int(width * height * 3 / ratio), "sha256": _sha(i + 10**12), "target_ratio": 32.0,
            "achieved_ratio": ratio, "model_id": MODEL_ID, "psnr": 30 + (i * 31) % 900 / 100,
            "ms_ssim": 0.95 + (i % 50) / 1000, "created_at": seen + timedelta(seconds=3),
        }
        yield source, path, job, version


def fill(url: str, sources: int) -> None:
    """Bulk-insert `sources` sources (and their rows) into the catalog at `url`, ids from 1."""
    engine = create_catalog_engine(url)
    upgrade(engine)
    started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(
            CodecModel.__table__.insert(),
            [{"id": MODEL_ID, "path": "/models/bench.safetensors", "created_at": EPOCH, "is_default": True}],
        )
    tables = [Source.__table__, SourcePath.__table__, Job.__table__, ArchiveVersion.__table__]
    for start in range(1, sources + 1, BATCH):
        batch = list(_rows(start, min(start + BATCH, sources + 1)))
        with engine.begin() as connection:
            for n, table in enumerate(tables):
                connection.execute(table.insert(), [row[n] for row in batch if row[n] is not None])
        done = min(start + BATCH - 1, sources)
        print(f"\r{done:,} sources, {time.monotonic() - started:.0f} s", end="", file=sys.stderr, flush=True)
    _analyze(engine)
    print(f"\nfilled {sources:,} sources in {time.monotonic() - started:.0f} s", file=sys.stderr)
    engine.dispose()


def _analyze(engine: Engine) -> None:
    """On PostgreSQL, id sequences moved past the ids given here, and the statistics that
    autovacuum would gather. SQLite gets no ANALYZE, as no part of AIC runs one: its averages
    (`state` holds half of the jobs) would have SQLite read the whole jobs table for the
    oldest claimable job rather than take ix_jobs_claim (docs/scale.md)."""
    if engine.dialect.name == "sqlite":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("sources", "source_paths", "jobs", "archive_versions"):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        connection.exec_driver_sql("VACUUM ANALYZE")


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `aic-admin` process."""
    started = time.monotonic()
    process = subprocess.Popen([*ADMIN, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise RuntimeError(f"aic-admin {' '.join(argv)} exited {process.returncode}: {process.stderr.read()}")
    return wall, usage.ru_maxrss / 1024


def commands(sample_id: int) -> list[tuple[str, list[str]]]:
    return [
        ("verify --help (start-up floor)", ["verify", "--help"]),
        ("stats", ["stats"]),
        ("stats --json", ["stats", "--json"]),
        ("ls (first page)", ["ls"]),
        ("ls --json (first page)", ["ls", "--json"]),
        ("ls --state quarantined", ["ls", "--state", "quarantined"]),
        ("ls --folder F", ["ls", "--folder", "/photos/folder-3"]),
        (f"show {sample_id}", ["show", str(sample_id)]),
        ("quarantine", ["quarantine", "--json"]),
        ("status --json", ["status", "--json"]),
        ("ls --all --json", ["ls", "--all", "--json"]),
        ("ls --all (table)", ["ls", "--all"]),
        ("recompress --ratio 64 --all --dry-run --json", ["recompress", "--ratio", "64", "--all", "--dry-run",
                                                         "--json"]),
    ]


def _median_seconds(work: Callable[[], object]) -> float:
    times = []
    for _ in range(DAEMON_RUNS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def daemon_work(sources: int) -> list[tuple[str, Callable[[Session], object]]]:
    """What each daemon asks of the catalog, as the daemons' own functions ask it."""
    probe = max(1, sources // 2)

    def record(session: Session) -> None:  # the watcher: a new file, then the same content again
        find_path(session, f"/photos/new/{time.monotonic_ns()}.jpg")
        find_source(session, _sha(probe))
        record_source(session, path=f"/photos/new/{time.monotonic_ns()}.jpg", folder="/photos/new",
                      sha256=_sha(probe), size=1, mtime=EPOCH, width=1, height=1, mode="RGB")

    def claim(session: Session) -> None:
        job, _ = enqueue_job(session, JobKind.RECOMPRESS, probe, target_ratio=48.0, model_id=MODEL_ID)
        session.flush()
        assert lease.claim(session, "bench", job_id=job.id) is not None
        lease.claim(session, "bench")  # the oldest claimable: none left

    counted: list[DoneCount] = []  # the full count a process keeps between scrapes

    def scrape(session: Session) -> None:  # jobs/backlog.py: unfinished states, done since the count
        if not counted:
            counted.append(count_jobs(session, None, time.monotonic())[1])
        count_jobs(session, counted[0], time.monotonic())

    def recount(session: Session) -> None:  # the same, every DONE_RECOUNT_SECONDS per process
        count_jobs(session, None, time.monotonic())

    return [
        ("watcher: record a file, dedup by sha256 and path", record),
        ("worker: claim a job", claim),
        ("reaper round", lambda session: lease.reap(session)),
        ("metrics scrape between full counts", scrape),
        ("metrics scrape, a full count", recount),
        ("status (catalog side)", status_report),
    ]


def _rolled_back(engine: Engine, work: Callable[[Session], object]) -> Callable[[], None]:
    """`work` in a transaction rolled back afterwards: the catalog stays as filled."""
    def run() -> None:
        with session_factory(engine)() as session, session.begin():
            work(session)
            session.rollback()
    return run


def daemon_queries(engine: Engine, sources: int) -> list[tuple[str, float]]:
    """The median time of each daemon's work."""
    return [(name, _median_seconds(_rolled_back(engine, work))) for name, work in daemon_work(sources)]


def _statements(engine: Engine, work: Callable[[Session], object]) -> dict[str, Any]:
    """The SELECT, UPDATE and INSERT statements `work` runs, with their first parameters."""
    found: dict[str, Any] = {}

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.split()[0] in ("SELECT", "UPDATE", "INSERT"):
            found.setdefault(statement, parameters)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        _rolled_back(engine, work)()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return found


def explain(url: str) -> None:
    """The plan of every statement each daemon's work runs, and `stats` and a quarantine page,
    as the database plans it."""
    engine = create_catalog_engine(url)
    with engine.connect() as connection:
        sources = connection.scalar(select(func.count()).select_from(Source))
    sqlite = engine.dialect.name == "sqlite"
    reports = [("stats", stats_report), ("quarantine page", lambda session: quarantine_report(session))]
    for name, work in [*daemon_work(sources), *reports]:
        statements = _statements(engine, work)
        print(f"#### {name}\n")
        with engine.connect() as connection:
            for statement, parameters in statements.items():
                cursor = connection.connection.driver_connection.cursor()
                cursor.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters)
                plan = "\n".join(str(row[-1] if sqlite else row[0]) for row in cursor.fetchall())
                if plan:  # SQLite plans no plain INSERT
                    shown = re.sub(r"^SELECT (.{50,}?) FROM ", "SELECT … FROM ", " ".join(statement.split()))
                    print(f"```sql\n{shown}\n```\n```\n{plan}\n```\n")
    engine.dispose()


def report_times(engine: Engine, sources: int) -> list[tuple[str, float]]:
    """Each report as the CLI and the web API call it, in this process (no start-up), best of 3."""
    reads = session_factory(reading(engine))
    under = Selection(folder=Path("/photos/folder-3")).conditions()

    def best(work: Callable[[Session], object]) -> float:
        times = []
        for _ in range(3):
            with reads() as session:
                started = time.perf_counter()
                work(session)
                times.append(time.perf_counter() - started)
        return min(times)

    def stream(session: Session) -> None:  # what `ls --all --json` does with each row
        for record in iter_source_records(session):
            json.dumps(record, default=str)

    def planned(session: Session) -> None:  # `recompress --dry-run`'s planning, every source
        for batch in candidates(reads, []):
            for candidate in batch:
                plan(candidate, 64.0, MODEL_ID)

    timed = [
        ("stats_report", best(stats_report)),
        ("source_page (first 100)", best(lambda s: source_page(s))),
        ("source_page (after the middle id)", best(lambda s: source_page(s, after_id=sources // 2))),
        ("source_page state=quarantined", best(lambda s: source_page(s, state="quarantined"))),
        ("source_page --folder F", best(lambda s: source_page(s, conditions=under))),
        ("source_details", best(lambda s: source_details(s, sources // 2))),
        ("quarantine_report", best(quarantine_report)),
        ("status_report", best(status_report)),
    ]
    started = time.perf_counter()
    with reads() as session:
        stream(session)
    timed.append(("iter_source_records + json.dumps, rows/s", sources / (time.perf_counter() - started)))
    started = time.perf_counter()
    planned(None)  # type: ignore[arg-type]
    timed.append(("recompress planning, sources/s", sources / (time.perf_counter() - started)))
    return timed


def write_while_reading(engine: Engine, env: dict[str, str]) -> list[tuple[str, float]]:
    """The longest one-row commit (a worker renewing a lease) while each command reads."""
    sessions = session_factory(engine)
    found = []
    for name, argv in [("stats", ["stats"]), ("ls --all --json", ["ls", "--all", "--json"]),
                       ("recompress --dry-run", ["recompress", "--ratio", "64", "--all", "--dry-run"])]:
        waits: list[float] = []
        reader = threading.Thread(target=_run, args=(argv, env))
        reader.start()
        while reader.is_alive():
            started = time.monotonic()
            with sessions() as session, session.begin():
                session.execute(update(Job).where(Job.id == 1).values(updated_at=Job.updated_at))
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
        found.append((name, max(waits)))
    return found


def time_all(url: str, repeat: int) -> None:
    engine = create_catalog_engine(url)
    with engine.connect() as connection:
        sources = connection.scalar(select(func.count()).select_from(Source))
        backend = engine.dialect.name
    home = os.environ.get("AIC_HOME", "/tmp/aic-scale-home")
    env = {**os.environ, "AIC_DATABASE_URL": url, "AIC_HOME": home}
    print(f"{sources:,} sources on {backend}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d}\n")
    print("| command | wall s | peak RSS MB |\n|---|---|---|")
    for name, argv in commands(max(1, sources // 2)):
        runs = [_run(argv, env) for _ in range(repeat)]
        wall = min(r[0] for r in runs)
        print(f"| `aic-admin {name}` | {wall:.2f} | {max(r[1] for r in runs):.0f} |", flush=True)
    print("\n| in this process | s (or rate) |\n|---|---|")
    for name, value in report_times(engine, sources):
        print(f"| {name} | {value:,.0f} |" if "/s" in name else f"| {name} | {value:.3f} |", flush=True)
    print("\n| daemon query | median ms |\n|---|---|")
    for name, seconds in daemon_queries(engine, sources):
        print(f"| {name} | {seconds * 1000:.1f} |", flush=True)
    if backend == "sqlite":
        print("\n| while this reads | longest one-row commit, ms |\n|---|---|")
        for name, seconds in write_while_reading(engine, env):
            print(f"| `aic-admin {name}` | {seconds * 1000:.0f} |", flush=True)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fill", help="bulk-insert a synthetic catalog")
    p.add_argument("--sources", type=int, required=True)
    p.add_argument("--database", required=True, help="catalog URL (empty database or schema)")
    p = sub.add_parser("explain", help="the plans of the daemons' statements (Markdown)")
    p.add_argument("--database", required=True, help="catalog URL filled by `fill`")
    p = sub.add_parser("time", help="time the admin commands and the daemon queries")
    p.add_argument("--database", required=True, help="catalog URL filled by `fill`")
    p.add_argument("--repeat", type=int, default=1, help="runs per command; the best counts")
    args = parser.parse_args(argv)
    if args.command == "fill":
        fill(args.database, args.sources)
    elif args.command == "explain":
        explain(args.database)
    else:
        time_all(args.database, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
