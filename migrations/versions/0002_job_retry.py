"""job retries: backoff (not_before), a quarantine reason of its own, an index for claiming

Revision 0001 kept a quarantined job's reason in last_error; it moves to quarantine_reason.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("quarantine_reason", sa.Text(), nullable=True))
        batch_op.create_index("ix_jobs_claim", ["state", "not_before"])
    op.execute("UPDATE jobs SET quarantine_reason = last_error WHERE state = 'quarantined'")


def downgrade() -> None:
    op.execute(
        "UPDATE jobs SET last_error = quarantine_reason"
        " WHERE state = 'quarantined' AND quarantine_reason IS NOT NULL"
    )
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.drop_column("quarantine_reason")
        batch_op.drop_column("not_before")
