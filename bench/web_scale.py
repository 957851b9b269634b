"""The dashboard and API on a large catalog (issue #16: a sources page and /api/v1/stats each
within 200 ms with 100,000 sources, on the 2-core machine).

    python bench/catalog_scale.py fill --sources 100000 --database URL
    python bench/web_scale.py --database URL [--runs 20]

Serves the real app with uvicorn on a loopback port (as `aic-admin serve` does) and times each
request over HTTP with httpx: one warm-up, then the median and the slowest of --runs. The
thumbnails a sources page shows are separate requests (decodes, cached), not counted here.
The last row times catalog/reports.stats_report
itself, which the app keeps and recomputes in the background (aic_worker/web/stats_cache.py).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import socket
import statistics
import sys
import time

import httpx
from sqlalchemy import func, select

from aic_worker.catalog.engine import create_catalog_engine, reading, session_factory
from aic_worker.catalog.migrate import prepare_catalog
from aic_worker.catalog.models import Source
from aic_worker.catalog.reports import stats_report
from aic_worker.web.app import BackgroundServer, WebSettings, create_app

LIMIT_MS = 200


def requests(sources: int) -> list[tuple[str, str]]:
    """(what, path) of each timed request: the pages and API reads a dashboard user makes."""
    middle = sources // 2
    return [
        ("GET /api/v1/stats", "/api/v1/stats"),
        ("GET /api/v1/sources (first 100)", "/api/v1/sources?limit=100"),
        (f"GET /api/v1/sources (100 at offset {middle:,})", f"/api/v1/sources?limit=100&offset={middle}"),
        ("GET /api/v1/sources?state=quarantined", "/api/v1/sources?state=quarantined&limit=100"),
        ("GET /api/v1/sources?q= (a path part)", "/api/v1/sources?q=00042&limit=100"),
        (f"GET /api/v1/sources/{middle}", f"/api/v1/sources/{middle}"),
        ("page / (overview)", "/"),
        ("page /sources (first 50)", "/sources"),
        ("page /sources?page=1000", "/sources?page=1000"),
        ("page /sources?state=quarantined", "/sources?state=quarantined"),
        (f"page /sources/{middle}", f"/sources/{middle}"),
        ("page /quarantine", "/quarantine"),
    ]


def timed(client: httpx.Client, path: str, runs: int) -> tuple[float, float]:
    """Median and slowest milliseconds of `runs` requests, after one warm-up."""
    client.get(path).raise_for_status()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", required=True, help="catalog URL filled by bench/catalog_scale.py fill")
    p.add_argument("--runs", type=int, default=20, help="timed requests per row (default 20)")
    args = p.parse_args(argv)
    engine = create_catalog_engine(args.database)
    prepare_catalog(engine)
    with session_factory(engine)() as session:
        sources = session.scalar(select(func.count()).select_from(Source)) or 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = BackgroundServer(create_app(engine, WebSettings.from_env()), "127.0.0.1", port)
    url = server.start()
    slow = 0
    try:
        print(
            f"{sources:,} sources, {engine.dialect.name}, {platform.processor() or platform.machine()}, "
            f"{args.runs} runs each\n"
        )
        print("| request | median ms | slowest ms |\n|---|---:|---:|")
        with httpx.Client(base_url=url, timeout=60) as client:
            for what, path in requests(sources):
                median, worst = timed(client, path, args.runs)
                slow += median > LIMIT_MS
                print(f"| {what} | {median:.0f} | {worst:.0f} |", flush=True)
        times = []
        for _ in range(max(3, args.runs // 4)):
            start = time.perf_counter()
            with session_factory(reading(engine))() as session:
                stats_report(session)
            times.append((time.perf_counter() - start) * 1000)
        print(
            "| stats_report itself (what a request waits for when the kept report is over a minute old) "
            f"| {statistics.median(times):.0f} | {max(times):.0f} |"
        )
    finally:
        server.stop()
        engine.dispose()
    print(f"\n{slow} request(s) with a median over {LIMIT_MS} ms")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
