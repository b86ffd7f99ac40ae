"""tenant rate limit (operator controls)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Additive and nullable: NULL keeps every existing tenant on the deployment default.
    op.add_column("tenants", sa.Column("rate_limit", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("tenants", "rate_limit")
