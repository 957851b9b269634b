"""Alembic environment: migrates the catalog the application itself would open.

The engine comes from migrate.alembic_config() when called from code, else from
database_url() (AIC_DATABASE_URL / AIC_HOME), so the CLI and the daemons can't disagree.
Each run is one transaction: on PostgreSQL behind an advisory lock, on SQLite behind the
write lock that every catalog transaction takes (engine.py), so daemons starting together
on a fresh catalog migrate it once.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, text

from aic_worker.catalog.engine import create_catalog_engine, database_url
from aic_worker.catalog.models import Base, UtcDateTime

# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 0x41_49_43_00

config = context.config
# The alembic CLI logs as alembic.ini says; code that calls Alembic keeps its own logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Revisions spell UtcDateTime as the column type it stores: they never import app code."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can't ALTER most things; batch mode recreates the table
        render_item=_render_item,
        compare_type=True,
        **kwargs,
    )


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch enforcement outside any transaction (inside one, SQLite ignores the pragma).

    Batch mode copies a table and drops the old one; with enforcement on, that drop would
    cascade into or be refused by the tables that refer to it.
    """
    driver_connection: Any = connection.connection.driver_connection
    driver_connection.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _run_in_transaction(connection: Connection) -> None:
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        _configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    owned = engine is None
    if owned:
        engine = create_catalog_engine(database_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys(connection, on=False)
            try:
                _run_in_transaction(connection)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, on=True)
    finally:
        if owned:
            engine.dispose()


def run_migrations_offline() -> None:
    _configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
