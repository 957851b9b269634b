"""Catalog databases for tests: a real SQLite file and a real PostgreSQL, one fresh per test.

PostgreSQL is the one at 127.0.0.1:5432, database `test` (override with
AIC_TEST_POSTGRES_URL). Each test gets its own schema there (search_path), dropped
afterwards. If PostgreSQL is unreachable the tests fail: a skipped backend is an untested one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.migrate import upgrade

POSTGRES_URL = os.environ.get("AIC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL's URL, after checking that it answers."""
    try:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {error}", pytrace=False)
    return POSTGRES_URL


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty catalog database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq_dsn(base), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq_dsn(base), autocommit=True) as connection:
            connection.execute("SET lock_timeout = '20s'")
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    """An engine on an empty catalog (no schema yet)."""
    engine = create_catalog_engine(catalog_url)
    yield engine
    engine.dispose()


@pytest.fixture
def catalog(engine: Engine) -> Engine:
    """An engine on a catalog migrated to head."""
    upgrade(engine)
    return engine


@pytest.fixture
def session(catalog: Engine) -> Iterator[Session]:
    with session_factory(catalog)() as session:
        yield session
