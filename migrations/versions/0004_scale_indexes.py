"""indexes for a catalog of millions: every filter the CLI offers and every report's aggregate

sources.state (quarantined and new sources), source_paths.folder and, on PostgreSQL, a
text_pattern_ops index on the path (`--folder DIR` asks for a bytewise prefix; on SQLite
the index exists but is empty, its unique index on path answering the same range), current
versions' achieved_ratio and psnr (stats' quantiles and histogram, `--below-ratio`),
damaged versions, and jobs by (state, finished_at) for status' throughput.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = sa.text("superseded_by IS NULL")
DAMAGED = sa.text("damaged_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_sources_state", "sources", ["state"])
    op.create_index("ix_source_paths_folder", "source_paths", ["folder"])
    op.create_index(
        "ix_source_paths_path_pattern",
        "source_paths",
        ["path"],
        postgresql_ops={"path": "text_pattern_ops"},
        sqlite_where=sa.text("0"),  # empty: SQLite's unique index on path serves the range
    )
    for column in ("achieved_ratio", "psnr"):
        op.create_index(
            f"ix_archive_versions_current_{column}",
            "archive_versions",
            [column, "superseded_by"],  # covering on SQLite
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )
    op.create_index(
        "ix_archive_versions_damaged", "archive_versions", ["damaged_at"], sqlite_where=DAMAGED,
        postgresql_where=DAMAGED,
    )
    op.create_index("ix_jobs_finished", "jobs", ["state", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", "jobs")
    op.drop_index("ix_archive_versions_damaged", "archive_versions")
    for column in ("psnr", "achieved_ratio"):
        op.drop_index(f"ix_archive_versions_current_{column}", "archive_versions")
    op.drop_index("ix_source_paths_path_pattern", "source_paths")
    op.drop_index("ix_source_paths_folder", "source_paths")
    op.drop_index("ix_sources_state", "sources")
