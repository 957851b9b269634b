"""Which database the catalog lives in, and engines and sessions configured for it.

`AIC_DATABASE_URL` names the database (PostgreSQL through psycopg 3 in production); without
it the catalog is an SQLite file in the data directory (`AIC_HOME`, default the platform's
user data directory). Every process — daemons, admin commands, Alembic's env.py — resolves
the URL here, so they can't disagree about where the catalog is. A new SQLite catalog and
the folders made for it are private to their owner (private_files.py).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.private_files import create_private_file, file_mode, fsync_directory, make_folders

APP_NAME = "aic"
SQLITE_FILENAME = "catalog.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000
READS_ONLY = "aic_reads_only"  # execution option set by reading()


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`AIC_HOME`, or the platform's user data directory (e.g. ~/.local/share/aic)."""
    env = os.environ if env is None else env
    home = env.get("AIC_HOME")
    return Path(home).expanduser() if home else platformdirs.user_data_path(APP_NAME)


def database_url(env: Mapping[str, str] | None = None) -> str:
    """`AIC_DATABASE_URL`, or the default SQLite file under data_dir()."""
    env = os.environ if env is None else env
    url = env.get("AIC_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir(env) / SQLITE_FILENAME}"


def _with_driver(url: str) -> str:
    """Plain `postgresql://` URLs get psycopg 3; SQLAlchemy would otherwise pick psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_catalog_engine(
    url: str | None = None, *, connect_timeout: int | None = None, **kwargs: Any
) -> Engine:
    """An engine for the catalog at `url` (default: database_url()), tuned for its backend.

    `connect_timeout`: seconds after which connecting to a PostgreSQL catalog gives up (for
    the worker's processes, which must not hang while the database is away).
    """
    url = _with_driver(url or database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if connect_timeout is not None:
            kwargs["connect_args"] = {"connect_timeout": connect_timeout}
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        _create_private_sqlite_file(Path(parsed.database).expanduser())
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _create_private_sqlite_file(path: Path) -> None:
    """A new catalog file (and its folders, AIC_HOME among them) readable by its owner only.

    SQLite gives its -wal and -shm files the database file's permissions; left to itself it
    would create all three world-readable under the usual umask (private_files.py).
    """
    make_folders(path.parent)
    try:
        os.close(create_private_file(path))
    except FileExistsError:
        _narrow_existing(path)
        return
    fsync_directory(path.parent)


def _narrow_existing(path: Path) -> None:
    """A catalog made by a release before 0.4.0 (0644 under the usual umask), and its -wal and
    -shm files, narrowed to the modes AIC now creates; never widened, and only files we own."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = candidate.stat()
        except FileNotFoundError:
            continue
        narrowed = stat.S_IMODE(info.st_mode) & file_mode()
        if info.st_uid == os.getuid() and narrowed != stat.S_IMODE(info.st_mode):
            os.chmod(candidate, narrowed)


def _configure_sqlite_connection(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    """WAL (readers don't block the writer), enforced foreign keys, waiting on locks, and
    durable commits: `synchronous = FULL` fsyncs the WAL at every commit. With NORMAL a power
    cut could take back a committed job after the original's policy (made durable by its own
    fsyncs) deleted or moved the original (DESIGN.md, invariant 2).

    isolation_level=None stops the sqlite3 module from issuing its own BEGIN, so that
    _begin_immediate decides how every transaction starts.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _set_wal(cursor)
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.close()


def _set_wal(cursor: sqlite3.Cursor, attempts: int = 50) -> None:
    """Switch to WAL. SQLite may answer "database is locked" at once, without its busy
    handler, when several processes open a fresh catalog together: wait and try again."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction starts, not at its first write.

    A deferred transaction that reads and then writes fails with SQLITE_BUSY (no waiting)
    when another writer committed in between; an immediate one waits its turn under
    busy_timeout. This is also what makes claiming a job atomic on SQLite (lease.py).
    Transactions on an engine from reading() only read: they begin deferred and take no
    lock that a writer waits for.
    """
    if connection.get_execution_options().get(READS_ONLY):
        connection.exec_driver_sql("BEGIN")
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def reading(engine: Engine) -> Engine:
    """`engine` (same pool) for transactions that only read, such as reports over the whole
    catalog. On SQLite in WAL mode such a transaction reads its snapshot beside the one
    writer: at a million sources `aic-admin stats` held the write lock for seconds when every
    transaction began IMMEDIATE, and a worker's commit waited behind it."""
    return engine.execution_options(**{READS_ONLY: True})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (workers log them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)
