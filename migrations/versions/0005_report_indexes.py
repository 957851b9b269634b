"""indexes for the reports as rebuilt in 0.4.0

The current versions' PSNR index also holds reference_version_id (covering on SQLite): stats
keeps the PSNR of re-encodes measured against an earlier version apart from the PSNR measured
against the original, and reads both distributions from this index.

jobs (state, updated_at): status' recent failures, the latest failed and latest quarantined
jobs, read in index order (before, every failed or quarantined job was sorted on each call).

archive_versions.created_at: the dashboard's chart counts the versions of the last three days
by hour, a range on this index (before, a pass over every version).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("superseded_by IS NULL")
PSNR = "ix_archive_versions_current_psnr"


def _psnr_index(columns: list[str]) -> None:
    op.create_index(PSNR, "archive_versions", columns, sqlite_where=CURRENT, postgresql_where=CURRENT)


def upgrade() -> None:
    op.drop_index(PSNR, "archive_versions")
    _psnr_index(["psnr", "superseded_by", "reference_version_id"])
    op.create_index("ix_jobs_state_updated", "jobs", ["state", "updated_at"])
    op.create_index("ix_archive_versions_created_at", "archive_versions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_archive_versions_created_at", "archive_versions")
    op.drop_index("ix_jobs_state_updated", "jobs")
    op.drop_index(PSNR, "archive_versions")
    _psnr_index(["psnr", "superseded_by"])
