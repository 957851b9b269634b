"""Watcher benchmark: how soon a finished file is queued, and how many files a second it queues.

1. Latency: files are written one by one (each closed, then left alone); for each, the time
   from its last write to its job's creation in the catalog. The floor is the stability
   window (default 2 s): that wait is the point, not overhead.
2. Throughput: `--files` PNGs (default 5,000) are renamed into the watched folder at once;
   files per second from the first arrival to the last job, window included.

A real watcher, observer and catalog (a fresh SQLite file unless --database-url); jobs are
published to a counter, not a broker, unless --broker. Prints a Markdown table for the README.

    python bench/watch.py [--files 5000] [--latency-files 20] [--observer inotify|polling]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from aic_watch.config import DEFAULT_STABILITY_WINDOW, make_config, make_folder
from aic_watch.watcher import Watcher
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import Job, SourcePath


def png(seed: int, size: int = 32) -> bytes:
    """A small PNG with content distinct for every seed."""
    pixels = hashlib.shake_256(seed.to_bytes(8, "little")).digest(size * size * 3)
    image = Image.frombytes("RGB", (size, size), pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def job_times(sessions, paths: list[Path]) -> dict[str, datetime]:
    """path -> its job's created_at."""
    with sessions() as session:
        rows = session.execute(
            select(SourcePath.path, Job.created_at)
            .join(Job, Job.source_id == SourcePath.source_id)
            .where(SourcePath.path.in_([str(p) for p in paths]))
        )
        return dict(rows.all())


def wait_for_jobs(sessions, count: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            done = session.scalar(select(func.count()).select_from(Job))
        if done >= count:
            return time.time()
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {count} jobs after {timeout:.0f}s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000, help="files arriving at once (throughput)")
    parser.add_argument("--latency-files", type=int, default=20, help="files written one by one (latency)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between the latency files")
    parser.add_argument("--window", type=float, default=DEFAULT_STABILITY_WINDOW, help="stability window (s)")
    parser.add_argument("--observer", choices=["inotify", "polling"], default="inotify")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--database-url", help="catalog (default: a fresh SQLite file)")
    parser.add_argument("--broker", action="store_true", help="publish through aic_worker.jobs.queue (Redis)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aic-bench-watch-") as tmp:
        root = Path(tmp)
        inbox, staging = root / "inbox", root / "staging"
        inbox.mkdir()
        staging.mkdir()
        engine = create_catalog_engine(args.database_url or f"sqlite:///{root / 'catalog.sqlite3'}")
        upgrade(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            register_model(session, hashlib.sha256(b"bench").hexdigest(), "/bench", make_default=True)
            session.commit()
        published: list[int] = []

        def count(job_id: int) -> bool:
            published.append(job_id)
            return True

        folder = make_folder(
            inbox,
            ratio=16,
            archive=root / "archive",
            observer=args.observer,
            poll_interval=args.poll_interval,
        )
        config = make_config([folder], stability_window=args.window, env={})
        watcher = Watcher(config, engine=engine, publish=None if args.broker else count)
        watcher.start()
        try:
            # 1. Latency, one file at a time.
            written: dict[str, float] = {}
            for i in range(args.latency_files):
                path = inbox / f"latency-{i:04}.png"
                with open(path, "wb") as file:
                    file.write(png(i))
                written[str(path)] = time.time()
                time.sleep(args.gap)
            wait_for_jobs(sessions, args.latency_files, timeout=60 + args.window * 2)
            times = job_times(sessions, [Path(p) for p in written])
            latencies = sorted(times[p].timestamp() - t for p, t in written.items())

            # 2. Throughput: everything arrives at once (renames within one filesystem).
            names = [f"burst-{i:05}.png" for i in range(args.files)]
            for i, name in enumerate(names):
                (staging / name).write_bytes(png(1_000_000 + i))
            start = time.time()
            for name in names:
                os.rename(staging / name, inbox / name)
            arrived = time.time() - start
            end = wait_for_jobs(sessions, args.latency_files + args.files, timeout=600)
            elapsed = end - start
        finally:
            watcher.stop()
            engine.dispose()

    p90 = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
    catalog = "PostgreSQL" if args.database_url else "SQLite"
    cpu = platform.processor() or platform.machine()
    print(
        f"\nWatcher ({args.observer}, window {args.window:g} s, {catalog}), {cpu}, {os.cpu_count()} cores\n"
    )
    print("| figure | value |")
    print("|---|---|")
    print(f"| last write → job queued, median of {len(latencies)} | {statistics.median(latencies):.2f} s |")
    print(f"| last write → job queued, 90th percentile | {p90:.2f} s |")
    print(f"| {args.files} files arriving at once (in {arrived:.2f} s) → all queued | {elapsed:.1f} s |")
    print(f"| files queued per second, window included | {args.files / elapsed:.0f} |")
    print(f"| files queued per second after the window | {args.files / (elapsed - args.window):.0f} |")


if __name__ == "__main__":
    main()
