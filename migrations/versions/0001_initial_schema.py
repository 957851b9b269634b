"""initial schema: sources and their paths, codec models, archive versions, jobs

Revision ID: 0001
Revises:
Create Date: 2026-11-25 14:00:06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHA256 = sa.String(length=64)
RATIO = sa.Numeric(precision=12, scale=4, asdecimal=False)
TIMESTAMP = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", SHA256, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
    )
    op.create_index(
        "uq_models_default",
        "models",
        ["is_default"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", SHA256, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("state", _enum("source_state", "new", "archived", "quarantined"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("sha256", name=op.f("uq_sources_sha256")),
    )

    op.create_table(
        "source_paths",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("mtime", TIMESTAMP, nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False),
        sa.Column("removed_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_source_paths_source_id_sources"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_paths")),
        sa.UniqueConstraint("path", name=op.f("uq_source_paths_path")),
    )
    op.create_index(op.f("ix_source_paths_source_id"), "source_paths", ["source_id"])

    op.create_table(
        "archive_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", SHA256, nullable=False),
        sa.Column("target_ratio", RATIO, nullable=False),
        sa.Column("achieved_ratio", sa.Float(), nullable=False),
        sa.Column("model_id", SHA256, nullable=False),
        sa.Column("psnr", sa.Float(), nullable=False),
        sa.Column("ms_ssim", sa.Float(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_archive_versions_model_id_models"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_archive_versions_source_id_sources"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["archive_versions.id"],
            name=op.f("fk_archive_versions_superseded_by_archive_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_versions")),
        sa.UniqueConstraint("path", name=op.f("uq_archive_versions_path")),
    )
    op.create_index(op.f("ix_archive_versions_model_id"), "archive_versions", ["model_id"])
    op.create_index(op.f("ix_archive_versions_source_id"), "archive_versions", ["source_id"])
    op.create_index(
        "uq_archive_versions_current",
        "archive_versions",
        ["source_id"],
        unique=True,
        sqlite_where=sa.text("superseded_by IS NULL"),
        postgresql_where=sa.text("superseded_by IS NULL"),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("job_kind", "compress", "recompress", "restore", "verify"), nullable=False),
        sa.Column(
            "state", _enum("job_state", "pending", "running", "done", "failed", "quarantined"), nullable=False
        ),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_ratio", RATIO, nullable=True),
        sa.Column("model_id", SHA256, nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "kind <> 'compress' OR (target_ratio IS NOT NULL AND model_id IS NOT NULL)",
            name=op.f("ck_jobs_compress_has_ratio_and_model"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts_not_negative")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_jobs_model_id_models"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_jobs_source_id_sources"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_source_id"), "jobs", ["source_id"])
    op.create_index(
        "uq_jobs_compress",
        "jobs",
        ["source_id", "target_ratio", "model_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'compress'"),
        postgresql_where=sa.text("kind = 'compress'"),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("archive_versions")
    op.drop_table("source_paths")
    op.drop_table("sources")
    op.drop_table("models")
