"""archive versions' lifecycle: passthrough kind, quality reference, removed and damaged marks

A passthrough version keeps the original's bytes (a .aic would not have been smaller) and
has no PSNR or MS-SSIM: both become nullable. reference_version_id names the version a
re-encode's quality was measured against when the original was gone; removed_at marks a
superseded version whose file was deleted on purpose (keep-versions, prune); damaged_at
marks one that verify found missing or altered.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("archive_versions") as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sa.Enum("aic", "passthrough", name="archive_kind", native_enum=False, create_constraint=True,
                        length=16),
                nullable=False,
                server_default="aic",
            )
        )
        batch_op.add_column(sa.Column("reference_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("damaged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_archive_versions_reference_version_id_archive_versions"),
            "archive_versions",
            ["reference_version_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch_op.alter_column("psnr", existing_type=sa.Float(), nullable=True)
        batch_op.alter_column("ms_ssim", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    passthrough = op.get_bind().scalar(sa.text("SELECT count(*) FROM archive_versions WHERE psnr IS NULL"))
    if passthrough:
        raise RuntimeError(
            f"{passthrough} passthrough archive versions have no PSNR; revision 0002 can't hold them"
        )
    with op.batch_alter_table("archive_versions") as batch_op:
        batch_op.alter_column("ms_ssim", existing_type=sa.Float(), nullable=False)
        batch_op.alter_column("psnr", existing_type=sa.Float(), nullable=False)
        batch_op.drop_constraint(
            op.f("fk_archive_versions_reference_version_id_archive_versions"), type_="foreignkey"
        )
        batch_op.drop_column("damaged_at")
        batch_op.drop_column("removed_at")
        batch_op.drop_column("reference_version_id")
        batch_op.drop_constraint(op.f("ck_archive_versions_archive_kind"), type_="check")
        batch_op.drop_column("kind")
