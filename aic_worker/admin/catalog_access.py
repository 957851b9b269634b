"""Opening the catalog for one `aic-admin` command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import prepare_catalog

T = TypeVar("T")


@contextmanager
def open_catalog() -> Iterator[sessionmaker[Session]]:
    """Sessions on the catalog (AIC_DATABASE_URL, else AIC_HOME's SQLite file).

    A fresh catalog gets its schema; an outdated one raises CatalogVersionError, which
    main() reports with the advice to run `aic-admin db upgrade`.
    """
    engine = create_catalog_engine()
    try:
        prepare_catalog(engine)
        yield session_factory(engine)
    finally:
        engine.dispose()


def read_catalog(collect: Callable[[Session], T]) -> T:
    """What `collect` reads from the catalog in one session."""
    with open_catalog() as sessions, sessions() as session:
        return collect(session)
