"""indexes for the reports as rebuilt in 0.4.0

The current versions' PSNR index also holds reference_version_id (covering on SQLite): stats
keeps the PSNR of re-encodes measured against an earlier version apart from the PSNR measured
against the original, and reads both distributions from this index.

jobs (state, updated_at): status' recent failures, the latest failed and latest quarantined
jobs, read in index order (before, every failed or quarantined job was sorted on each call).

archive_versions.created_at: the dashboard's chart counts the versions of the last three days
by hour, a range on this index (before, a pass over every version).

source_paths.path, a pg_trgm GIN index on PostgreSQL: the dashboard's search by a part of the
path (ILIKE '%part%') read every path, 0.4 s at 100,000 sources. Made only when it can be:
pg_trgm already installed (its operator class is taken from its schema), or available on the
server and the migrating user a superuser or holding CREATE on the database (pg_trgm is a
trusted extension from PostgreSQL 13): then CREATE EXTENSION, in `public` when the user may
create there (a schema that outlives any other), else in the current schema. Otherwise
skipped, with a warning: the search works, reading every path, and `alembic check` reports
this one index as missing. On SQLite the index is empty (WHERE 0), as 0004's pattern index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("superseded_by IS NULL")
PSNR = "ix_archive_versions_current_psnr"
TRIGRAM = "ix_source_paths_path_trigram"
INSTALLED = sa.text(
    "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    " WHERE e.extname = 'pg_trgm'"
)
log = logging.getLogger("alembic.runtime.migration")


def _trigram_schema(bind: sa.Connection) -> str | None:
    """The schema of pg_trgm's operator classes, installing it when the server has it and this
    user may; None when it can't be had."""
    installed = bind.execute(INSTALLED).scalar()
    if installed is not None:
        return installed
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).scalar()
    allowed = bind.execute(
        sa.text(
            "SELECT rolsuper OR has_database_privilege(current_database(), 'CREATE')"
            " FROM pg_roles WHERE rolname = current_user"
        )
    ).scalar()
    if not available or not allowed:
        log.warning("pg_trgm is %s: no trigram index for searches by path",
                    "not on this server" if not available else "not the migrating user's to create")
        return None
    in_public = bind.execute(
        sa.text("SELECT to_regnamespace('public') IS NOT NULL AND has_schema_privilege('public', 'CREATE')")
    ).scalar()
    try:
        with bind.begin_nested():  # a refusal leaves the migration's transaction usable
            where = " SCHEMA public" if in_public else ""
            bind.execute(sa.text(f"CREATE EXTENSION IF NOT EXISTS pg_trgm{where}"))
    except sa.exc.DBAPIError as error:
        log.warning("pg_trgm could not be created (%s): no trigram index for searches by path",
                    str(error.orig).splitlines()[0])
        return None
    return bind.execute(INSTALLED).scalar()


def _psnr_index(columns: list[str]) -> None:
    op.create_index(PSNR, "archive_versions", columns, sqlite_where=CURRENT, postgresql_where=CURRENT)


def upgrade() -> None:
    op.drop_index(PSNR, "archive_versions")
    _psnr_index(["psnr", "superseded_by", "reference_version_id"])
    op.create_index("ix_jobs_state_updated", "jobs", ["state", "updated_at"])
    op.create_index("ix_archive_versions_created_at", "archive_versions", ["created_at"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.create_index(TRIGRAM, "source_paths", ["path"], sqlite_where=sa.text("0"))
    else:
        schema = _trigram_schema(bind)
        if schema is not None:
            opclass = f'"{schema}".gin_trgm_ops'
            op.execute(f"CREATE INDEX {TRIGRAM} ON source_paths USING gin (path {opclass})")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {TRIGRAM}")  # pg_trgm stays: other things may use it
    op.drop_index("ix_archive_versions_created_at", "archive_versions")
    op.drop_index("ix_jobs_state_updated", "jobs")
    op.drop_index(PSNR, "archive_versions")
    _psnr_index(["psnr", "superseded_by"])
