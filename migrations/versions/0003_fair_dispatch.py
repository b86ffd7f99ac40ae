"""fair dispatch index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 15:45:08.207263
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_index(
        "ix_jobs_undispatched",
        "jobs",
        ["tenant_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NULL"),
    )


def downgrade() -> None:

    op.drop_index(
        "ix_jobs_undispatched",
        table_name="jobs",
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NULL"),
    )
