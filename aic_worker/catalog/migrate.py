"""Bringing a catalog's schema to the code's revision, from code rather than the alembic CLI.

`aic-admin db upgrade` calls upgrade(); daemons call prepare_catalog() on start, which
creates the schema of a fresh catalog but refuses to run against an older one: upgrading a
production catalog is an operator's decision (backup first), not a side effect of a restart.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class CatalogVersionError(RuntimeError):
    """The catalog's schema is not the one this code was written for."""


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config for our scripts, independent of alembic.ini and the working directory.

    env.py migrates `engine` when given, else the catalog that database_url() names.
    """
    if not MIGRATIONS_DIR.is_dir():
        raise CatalogVersionError(f"migration scripts not found at {MIGRATIONS_DIR}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The revision this code expects."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise CatalogVersionError(f"no revisions in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The catalog's revision; None for a fresh (empty) catalog."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the catalog to `revision`; safe to run from several processes at once."""
    command.upgrade(alembic_config(engine), revision)


def prepare_catalog(engine: Engine) -> str:
    """On a daemon's start: create a fresh catalog's schema; refuse an outdated one."""
    head = head_revision()
    current = current_revision(engine)
    if current is None:
        upgrade(engine)
        current = current_revision(engine)
    if current != head:
        try:
            ScriptDirectory.from_config(alembic_config()).get_revision(current)
        except CommandError:
            raise CatalogVersionError(
                f"catalog is at revision {current}, unknown to this code: was it upgraded by a newer release?"
            ) from None
        raise CatalogVersionError(
            f"catalog is at revision {current}, this code needs {head}: run `aic-admin db upgrade`"
        )
    return current
