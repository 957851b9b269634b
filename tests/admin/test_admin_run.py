"""`aic-admin run` as a real process: embedded broker, a worker, the watcher, SQLite in AIC_HOME.

Stopped with SIGTERM in the middle of the work and started again, every image ends up
archived exactly once, and nothing it started outlives it. Its summary, read from a real
catalog, counts only what is still quarantined.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Engine, func, select

from aic_worker.admin.run_command import _Progress
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.models import ArchiveVersion, Job, JobState, utcnow
from aic_worker.catalog.sources import quarantine_source, record_source
from tests.conftest import RATIO, wait_for, write_photos


class RunProcess:
    def __init__(self, home: Path, inbox: Path, env: dict[str, str], log: Path) -> None:
        self.home = home
        self.log = log
        self._file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aic_worker.admin.main",
                "run",
                str(inbox),
                "--ratio",
                str(RATIO),
                "--stability-window",
                "0.5",
            ],
            env=env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a service manager would send it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(150)
        finally:
            if self.process.poll() is None:
                self.process.kill()  # its broker and worker get SIGTERM from the kernel (die_with_parent)
                self.process.wait()
            self._file.close()


@pytest.fixture
def started() -> Iterator[list[RunProcess]]:
    """The runs a test starts, stopped at its end whatever happened."""
    runs: list[RunProcess] = []
    yield runs
    for run in runs:
        run.stop()


def left_behind(home: Path) -> list[psutil.Process]:
    """Processes still running with this AIC_HOME (the broker and worker inherit it)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("AIC_HOME") == str(home):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def test_run_stopped_mid_work_and_restarted_archives_everything_once(
    tmp_path: Path, model_file: Path, started: list[RunProcess]
) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    photos = write_photos(inbox, 10) + write_photos(inbox / "2024", 2, size=64)
    env = {
        **os.environ,
        "AIC_HOME": str(home),
        "AIC_MODEL": str(model_file),
        "AIC_DEVICE": "cpu",
        "AIC_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    for name in ("AIC_DATABASE_URL", "AIC_BROKER_URL", "AIC_ARCHIVE"):
        env.pop(name, None)

    engine = create_catalog_engine(f"sqlite:///{home / 'catalog.sqlite3'}")
    sessions = session_factory(engine)

    def archived() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(ArchiveVersion)) or 0

    first = RunProcess(home, inbox, env, tmp_path / "run1.log")
    started.append(first)
    wait_for(lambda: "Ctrl-C stops" in first.output() or first.process.poll() is not None, 60, "the start")
    wait_for(
        lambda: archived() or first.process.poll() is not None, 150, "the first file archived", interval=0.05
    )
    assert first.stop() == 0, first.output()
    out1 = first.output()
    assert f"AIC_HOME: {home}" in out1 and "broker: redis+socket://" in out1 and "stopped:" in out1
    assert not left_behind(home)
    assert 1 <= archived() < len(photos)  # stopped in the middle of the work
    photos += write_photos(inbox, 2, size=80, prefix="late")  # arrived while it was down

    second = RunProcess(home, inbox, env, tmp_path / "run2.log")
    started.append(second)
    wait_for(
        lambda: archived() == len(photos) or second.process.poll() is not None, 150, "every file archived"
    )
    assert second.stop() == 0, second.output()
    assert not left_behind(home)

    with sessions() as session:
        versions = session.scalars(select(ArchiveVersion)).all()
        states = session.scalars(select(Job.state)).all()
    engine.dispose()
    assert len(versions) == len(photos) and len({v.source_id for v in versions}) == len(photos)
    assert set(states) == {JobState.DONE} and len(states) == len(photos)
    expected = {str(home / "archive" / p.relative_to(inbox)) + ".aic" for p in photos}
    assert {v.path for v in versions} == expected and all(Path(p).is_file() for p in expected)
    assert not list((home / "archive").rglob("*.tmp"))
    lines = [
        line for log in (out1, second.output()) for line in log.splitlines() if line.startswith("archived ")
    ]
    assert sorted(line.split()[1] for line in lines) == sorted(map(str, photos))  # each reported once


def test_the_summary_counts_what_is_still_quarantined(
    catalog: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A half-written file quarantined, then complete at the same path: said, and not counted."""
    sessions = session_factory(catalog)
    progress = _Progress(sessions, live=False)

    def found(path: str, content: bytes, problem: str | None = None) -> None:
        """What the watcher records for a file that held still (aic_watch/enqueue.py)."""
        with sessions() as session, session.begin():
            source = record_source(
                session, path=path, folder="/in", sha256=hashlib.sha256(content).hexdigest(),
                size=len(content), mtime=utcnow(), width=None, height=None, mode=None,
            )
            if problem:
                quarantine_source(session, source.id, problem)

    found("/in/slow.png", b"half", "does not decode as an image: truncated")
    found("/in/bad.png", b"junk", "does not decode as an image: not an image")
    progress.poll()
    found("/in/slow.png", b"half and the rest")
    progress.poll()
    progress.summary()
    out = capsys.readouterr().out
    assert "quarantined /in/slow.png: does not decode as an image: truncated" in out
    assert "no longer quarantined: /in/slow.png" in out
    assert "stopped: 0 archived, 1 quarantined in this run (1 more resolved since)" in out
