"""Where the catalog is, and how its connections are set up."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import platformdirs
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import StatementError

from aic_worker.catalog.engine import create_catalog_engine, data_dir, database_url, session_factory
from aic_worker.catalog.migrate import head_revision, prepare_catalog
from aic_worker.catalog.models import CodecModel


def test_the_url_comes_from_aic_database_url() -> None:
    env = {"AIC_DATABASE_URL": "postgresql://aic@db/aic", "AIC_HOME": "/srv/aic"}
    assert database_url(env) == "postgresql://aic@db/aic"


def test_the_default_is_an_sqlite_file_in_aic_home(tmp_path: Path) -> None:
    assert database_url({"AIC_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path}/catalog.sqlite3"
    assert data_dir({"AIC_HOME": str(tmp_path)}) == tmp_path


def test_without_aic_home_the_data_dir_is_the_platforms() -> None:
    assert data_dir({}) == platformdirs.user_data_path("aic")


def test_a_fresh_default_catalog_is_created_on_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIC_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIC_HOME", str(tmp_path / "home"))
    engine = create_catalog_engine()
    try:
        assert prepare_catalog(engine) == head_revision()
    finally:
        engine.dispose()
    assert (tmp_path / "home" / "catalog.sqlite3").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_new_sqlite_catalog_and_aic_home_are_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    monkeypatch.delenv("AIC_DATABASE_URL", raising=False)
    monkeypatch.delenv("AIC_GROUP_READABLE", raising=False)
    home = tmp_path / "shared" / "home"
    monkeypatch.setenv("AIC_HOME", str(home))
    previous = os.umask(umask)
    try:
        engine = create_catalog_engine()
        try:
            prepare_catalog(engine)
            with engine.connect() as connection:  # open: its -wal and -shm files are there
                modes = {f.name: f.stat().st_mode & 0o777 for f in home.glob("catalog.sqlite3*")}
                connection.rollback()
        finally:
            engine.dispose()
    finally:
        os.umask(previous)
    assert modes == dict.fromkeys(["catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"], 0o600)
    assert home.stat().st_mode & 0o777 == (tmp_path / "shared").stat().st_mode & 0o777 == 0o700


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}


def test_every_sqlite_connection_commits_durably(tmp_path: Path) -> None:
    """synchronous = FULL (2) on each pooled connection, not NORMAL (1): a commit survives a power cut."""
    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}", pool_size=3, max_overflow=0)
    try:
        connections = [engine.raw_connection() for _ in range(3)]  # three at once: three connects
        try:
            levels = [c.cursor().execute("PRAGMA synchronous").fetchone()[0] for c in connections]
        finally:
            for connection in connections:
                connection.close()
        with session_factory(engine).begin() as session:  # and inside a transaction, as the worker commits
            levels.append(session.connection().exec_driver_sql("PRAGMA synchronous").scalar())
    finally:
        engine.dispose()
    assert levels == [2, 2, 2, 2]


def test_plain_postgresql_urls_use_psycopg_3(postgres_url: str) -> None:
    engine = create_catalog_engine("postgresql://postgres@127.0.0.1:5432/test")
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_timestamps_come_back_as_utc_on_every_backend(catalog: Engine) -> None:
    created = datetime(2024, 3, 31, 1, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=2)))
    with session_factory(catalog).begin() as session:
        session.add(CodecModel(id="b" * 64, path="/m", created_at=created))
    with session_factory(catalog)() as session:
        stored = session.scalars(select(CodecModel.created_at)).one()
    assert stored == created and stored.tzinfo == UTC


def test_naive_timestamps_are_refused(catalog: Engine) -> None:
    with pytest.raises(StatementError, match="timezone-aware"), session_factory(catalog).begin() as session:
        session.add(CodecModel(id="c" * 64, path="/m", created_at=datetime(2024, 1, 1)))


def test_a_world_readable_catalog_of_an_older_release_is_narrowed_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIC_GROUP_READABLE", raising=False)
    path = tmp_path / "old.sqlite3"
    engine = create_catalog_engine(f"sqlite:///{path}")
    prepare_catalog(engine)
    engine.dispose()
    for name in ("old.sqlite3", "old.sqlite3-wal"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)  # what 0.3.0 left under the usual umask
    engine = create_catalog_engine(f"sqlite:///{path}")
    engine.dispose()
    modes = {f.name: f.stat().st_mode & 0o777 for f in tmp_path.glob("old.sqlite3*")}
    assert {"old.sqlite3", "old.sqlite3-wal"} <= modes.keys() and set(modes.values()) == {0o600}
