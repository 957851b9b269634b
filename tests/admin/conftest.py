"""`aic-admin` in this process against a real catalog (SQLite and PostgreSQL) and real files.

`archive_env` points the environment at the test's catalog, home, tiny model and CPU, and
archives images the way a worker does: a compress job per file, claimed and run under a
lease (here, in-process, through job_batch's --local path). Commands that talk to a broker
run as processes against the private redis-server (tests/conftest.py, `services`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aic_worker.admin.job_batch import run_batch
from aic_worker.admin.main import main
from aic_worker.admin.worker_commands import record_file
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import JobKind
from aic_worker.jobs.parameters import CompressParameters
from tests.conftest import RATIO


@dataclass
class ArchiveEnv:
    root: Path
    engine: Engine
    capsys: pytest.CaptureFixture[str]
    inbox: Path  # where the originals are (the folder the archive layout mirrors)
    archive: Path

    def archived(self, paths: Sequence[Path], ratio: float = RATIO) -> list[int]:
        """Record each file with its compress job and run the jobs here; returns the source ids."""
        sessions = session_factory(self.engine)
        jobs = []
        for path in paths:
            parameters = CompressParameters(path, self.inbox, self.archive)
            job, _ = record_file(sessions(), parameters, ratio)
            jobs.append(job)
        run_batch(sessions, [j.id for j in jobs], JobKind.COMPRESS, local=True, device="cpu")
        return [j.source_id for j in jobs]

    def admin(self, *argv: str) -> tuple[int, str]:
        """`aic-admin ARGV` in this process: (exit status, stdout)."""
        self.capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse
            code = exit_.code
        return code, self.capsys.readouterr().out


@pytest.fixture
def archive_env(
    tmp_path: Path,
    catalog: Engine,
    catalog_url: str,
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> ArchiveEnv:
    monkeypatch.setenv("AIC_DATABASE_URL", catalog_url)
    monkeypatch.setenv("AIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIC_MODEL", str(model_file))
    monkeypatch.setenv("AIC_DEVICE", "cpu")
    env = ArchiveEnv(tmp_path, catalog, capsys, tmp_path / "inbox", tmp_path / "archive")
    env.inbox.mkdir()
    return env
