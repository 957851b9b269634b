"""Opening the catalog for one `aic-admin` command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog.engine import create_catalog_engine, reading, session_factory
from aic_worker.catalog.migrate import prepare_catalog

T = TypeVar("T")


@contextmanager
def catalog_engine() -> Iterator[Engine]:
    """An engine on the catalog (AIC_DATABASE_URL, else AIC_HOME's SQLite file).

    A fresh catalog gets its schema; an outdated one raises CatalogVersionError, which
    main() reports with the advice to run `aic-admin db upgrade`.
    """
    engine = create_catalog_engine()
    try:
        prepare_catalog(engine)
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_catalog() -> Iterator[sessionmaker[Session]]:
    """Sessions on the catalog, for commands that change it."""
    with catalog_engine() as engine:
        yield session_factory(engine)


@contextmanager
def read_sessions() -> Iterator[sessionmaker[Session]]:
    """Sessions for commands that only read: on SQLite their transactions don't take the
    write lock (engine.reading), so a long report never keeps a worker from committing."""
    with catalog_engine() as engine:
        yield session_factory(reading(engine))


def read_catalog(collect: Callable[[Session], T]) -> T:
    """What `collect` reads from the catalog in one read-only session."""
    with read_sessions() as sessions, sessions() as session:
        return collect(session)
