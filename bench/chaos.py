"""Chaos bench: the whole pipeline under kill -9, a broker that forgets, restarts of the
database and the watcher; then counts what became of every file.

```
 DIR/inbox  ──► aic-watch ──► PostgreSQL (DIR/postgres, own port) ──► Redis (own port) ──► 2 × aic-worker
 N PNGs          restarted      restarted once (immediate stop,         restarted once       one kill -9'd
 (half at        once (-9)      crash recovery)                         with its data gone   every ~10 s,
 start, half                                                                                 started again
 trickled in)                                     DIR/archive ◄─────────────────────────────────────┘
```
It ends when the catalog says every file's job is finished (or at the deadline), then
checks from the files and the catalog, not from the workers' word:
- archived once: exactly one archive version, its file present, its sha256 right;
- lost: a file with no archive version (or its original gone: the policy is `keep`);
- twice: a file with more than one archive version, or a `.aic` on disk that no row names;
- temp files left: hidden or `*.tmp` files in the archive;
- verify failures: an archive whose sha256 is not the catalog's, or that does not decode to
  its original's size and to the PSNR the worker measured and recorded (the tiny model's
  PSNR is poor; that it is the same on decoding here is the point).
The last line says all of it. Exit status 0 only when nothing was lost, twice, left or failed.

The codec is a tiny random model (bench/tiny_model.py, unless --model): the point is the
machinery, not the codec's speed. PostgreSQL comes from /usr/lib/postgresql/*/bin (run as
the `postgres` user when this runs as root: DIR must be reachable by it), Redis from PATH.

    python bench/chaos.py --files 300 --workdir /tmp/chaos [--deadline 900] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from tiny_model import TINY_RATIO, small_photo_png, write_tiny_model  # noqa: E402

from aic_worker.admin.private_redis import PrivateRedis, free_port  # noqa: E402
from aic_worker.catalog.engine import create_catalog_engine, session_factory  # noqa: E402
from aic_worker.catalog.migrate import upgrade  # noqa: E402
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState, SourcePath  # noqa: E402

FINISHED = (JobState.DONE, JobState.QUARANTINED)
WORKERS = 2


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Postgres:
    """A PostgreSQL cluster of our own on a free localhost port, with a password."""

    def __init__(self, directory: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise SystemExit("no PostgreSQL: /usr/lib/postgresql/*/bin/pg_ctl not found")
        self.bin = Path(found[-1]).parent
        self.data, self.logfile = directory / "data", directory / "postgres.log"
        self.port, self.password = free_port(), secrets.token_hex(16)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        directory.mkdir(parents=True)
        pwfile = directory / "password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.as_user:
            shutil.chown(directory, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "aic", "--auth=scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        self.url = f"postgresql+psycopg://aic:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")


class Child:
    """A process in a group of its own (kill -9 takes it and its children), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = args.workdir.resolve()
        for name in ("inbox", "archive", "postgres", "redis", "logs", "home"):
            shutil.rmtree(self.dir / name, ignore_errors=True)
        self.inbox, self.archive, self.logs = self.dir / "inbox", self.dir / "archive", self.dir / "logs"
        for folder in (self.inbox, self.archive, self.logs, self.dir / "redis"):
            folder.mkdir(parents=True)
        self.model = args.model or write_tiny_model(self.dir / "model" / "tiny.safetensors")
        self.postgres = Postgres(self.dir / "postgres")
        self.redis = PrivateRedis(shutil.which("redis-server") or "redis-server", self.dir / "redis")
        self.random = random.Random(args.seed)
        self.workers: list[Child] = []
        self.watcher: Child | None = None
        self.started = 0
        self.kills = 0
        self.written = 0
        self.events: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AIC_HOME": str(self.dir / "home"),
            "AIC_DATABASE_URL": self.postgres.url,
            "AIC_BROKER_URL": self.redis.url,
            "AIC_MODEL": str(self.model),
            "AIC_DEVICE": "cpu",
            "AIC_LEASE_SECONDS": "20",
            "AIC_REAP_SECONDS": "2",
            "AIC_DB_RETRY_SECONDS": "15",
            "AIC_TASK_TIME_LIMIT": "120",
            "AIC_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }

    def start_worker(self) -> Child:
        self.started += 1
        command = [sys.executable, "-m", "aic_worker.jobs.main", "--concurrency", "1", "--loglevel", "INFO",
                   "--hostname", f"chaos{self.started}@%h"]
        return Child(f"worker {self.started}", command, self.env(), self.logs / f"worker{self.started}.log")

    def start_watcher(self) -> Child:
        command = [sys.executable, "-m", "aic_watch.main", str(self.inbox), "--ratio", str(self.args.ratio),
                   "--archive", str(self.archive), "--policy", "keep", "--stability-window", "0.5"]
        return Child("watcher", command, self.env(), self.logs / "watcher.log")

    def write_files(self, upto: int) -> None:
        while self.written < min(upto, self.args.files):
            name = self.inbox / f"img{self.written:06d}.png"
            part = self.inbox / f".{name.name}.part"  # not a pattern the watcher takes
            part.write_bytes(small_photo_png(self.args.seed * 1_000_003 + self.written, self.args.size))
            part.rename(name)
            self.written += 1

    def finished(self, sessions) -> tuple[int, int]:
        """(jobs finished, jobs in all) of the compress kind."""
        with sessions() as session:
            rows = dict(session.execute(
                select(Job.state, func.count()).where(Job.kind == JobKind.COMPRESS).group_by(Job.state)
            ).all())
        return sum(rows.get(state, 0) for state in FINISHED), sum(rows.values())

    def run(self) -> int:
        args = self.args
        t0 = time.monotonic()
        log(f"chaos: {args.files} files, {WORKERS} workers, model {self.model.name} (tiny: the machinery is "
            f"measured, not the codec)" if args.model is None else f"chaos: model {self.model}")
        self.postgres.start()
        self.redis.start()
        engine = create_catalog_engine(self.postgres.url, connect_timeout=3)
        upgrade(engine)
        sessions = session_factory(engine)
        self.write_files(args.files // 2)
        self.watcher = self.start_watcher()
        self.workers = [self.start_worker() for _ in range(WORKERS)]
        trickle_from = time.monotonic()
        next_kill = time.monotonic() + self.random.uniform(7, 13)
        deadline = t0 + args.deadline
        done = total = 0
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                # the other half arrives over the first minute, while things break
                late = args.files - args.files // 2
                self.write_files(args.files // 2 + int(late * (now - trickle_from) / 60))
                with contextlib.suppress(Exception):  # the database is restarting
                    done, total = self.finished(sessions)
                share = done / args.files
                elapsed = now - t0
                if "redis" not in self.events and (share >= 0.25 or elapsed > 90):
                    self.redis.stop()
                    shutil.rmtree(self.dir / "redis")
                    (self.dir / "redis").mkdir()
                    self.redis.start()  # same port and password, nothing in it
                    self.events["redis"] = elapsed
                    log(f"Redis restarted with its data gone ({done}/{args.files} done)")
                elif "postgres" not in self.events and (share >= 0.5 or elapsed > 180):
                    self.postgres.stop("immediate")  # as a crash: recovery from the WAL at start
                    time.sleep(2)
                    self.postgres.start()
                    self.events["postgres"] = elapsed
                    log(f"PostgreSQL restarted after an immediate stop ({done}/{args.files} done)")
                elif "watcher" not in self.events and (share >= 0.7 or elapsed > 270):
                    assert self.watcher is not None
                    self.watcher.kill()
                    self.watcher = self.start_watcher()
                    self.events["watcher"] = elapsed
                    log(f"watcher kill -9'd and started again ({done}/{args.files} done)")
                if now >= next_kill and done < args.files:
                    victim = self.random.randrange(len(self.workers))
                    self.workers[victim].kill()
                    self.kills += 1
                    self.workers[victim] = self.start_worker()
                    next_kill = now + self.random.uniform(7, 13)
                if (done >= args.files and total == done and len(self.events) == 3
                        and self.written == args.files):
                    break
                time.sleep(0.5)
            wall = time.monotonic() - t0
            log(f"{done}/{args.files} finished after {wall:.0f} s; {self.kills} worker kills")
        finally:
            for child in (*self.workers, *([self.watcher] if self.watcher else [])):
                child.stop()
        try:
            return self.report(sessions, wall, timed_out=done < args.files)
        finally:
            engine.dispose()
            self.redis.stop()
            self.postgres.stop()

    def report(self, sessions, wall: float, *, timed_out: bool) -> int:
        from aic_worker.codec import Codec
        from aic_worker.codec.quality import psnr

        codec = Codec.load(self.model, "cpu")
        with sessions() as session:
            paths = dict(session.execute(select(SourcePath.path, SourcePath.source_id)).all())
            versions: dict[int, list[ArchiveVersion]] = {}
            for version in session.scalars(select(ArchiveVersion)):
                versions.setdefault(version.source_id, []).append(version)
            states = dict(session.execute(
                select(Job.state, func.count()).where(Job.kind == JobKind.COMPRESS).group_by(Job.state)
            ).all())
        once = lost = twice = verify_failures = 0
        named = set()
        for index in range(self.args.files):
            original = self.inbox / f"img{index:06d}.png"
            mine = versions.get(paths.get(str(original), -1), [])
            named.update(Path(v.path) for v in mine)
            if not original.is_file() or not mine:
                lost += 1
                continue
            if len(mine) > 1:
                twice += 1
                continue
            once += 1
            version = mine[0]
            try:
                data = Path(version.path).read_bytes()
                with Image.open(original) as image:
                    reference = np.asarray(image.convert("RGB"))
                decoded = np.asarray(codec.decompress(data).convert("RGB"))
                sound = (hashlib.sha256(data).hexdigest() == version.sha256
                         and decoded.shape == reference.shape
                         and abs(psnr(reference, decoded) - version.psnr) < 0.01)
            except Exception:
                sound = False
            verify_failures += not sound
        on_disk = [p for p in self.archive.rglob("*") if p.is_file()]
        temps = [p for p in on_disk if p.name.startswith(".") or p.name.endswith(".tmp")]
        orphans = [p for p in on_disk if p.suffix == ".aic" and p not in named and p not in temps]
        twice += len(orphans)
        quarantined = states.get(JobState.QUARANTINED, 0)
        log(f"job states: { {str(k): v for k, v in states.items()} }; events at "
            f"{ {k: round(v) for k, v in self.events.items()} } s; orphan .aic files: {len(orphans)}")
        log(f"{platform.node()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}, "
            f"{self.started} worker starts, {self.kills} kill -9s; tiny model, machinery-bound")
        print(f"chaos: files {self.args.files}, archived once {once}, lost {lost}, twice {twice}, "
              f"temp files left {len(temps)}, verify failures {verify_failures}, quarantined {quarantined}, "
              f"{wall:.0f} s{' (DEADLINE PASSED)' if timed_out else ''}", flush=True)
        return 0 if once == self.args.files and not (lost or twice or temps or verify_failures) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--workdir", type=Path, required=True, help="inbox, archive, postgres, redis, logs")
    parser.add_argument("--deadline", type=float, default=900, help="seconds (default 900)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="pixels a side (default 64)")
    parser.add_argument("--ratio", type=float, default=TINY_RATIO)
    parser.add_argument("--model", type=Path, help="real weights instead of the tiny model")
    args = parser.parse_args()
    sys.exit(Chaos(args).run())


if __name__ == "__main__":
    main()
