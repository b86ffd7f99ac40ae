"""spend control, routing strategy per job, retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MONEY = sa.Numeric(18, 6)


def upgrade() -> None:
    # All additive and nullable: NULL means "no budget", "deployment default", "unknown".
    op.add_column("tenants", sa.Column("monthly_budget", _MONEY, nullable=True))
    op.add_column("tenants", sa.Column("budget_alert_ratio", sa.Numeric(6, 4), nullable=True))
    op.add_column("tenants", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("cost_estimate", _MONEY, nullable=True))
    op.add_column("jobs", sa.Column("routing", sa.String(16), nullable=True))
    # One row per tenant and calendar month (UTC): what submissions reserved and what
    # finished jobs cost, so a budget check is one conditional UPDATE of one row.
    op.create_table(
        "tenant_spend",
        sa.Column(
            "tenant_id",
            sa.String(40),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("reserved", _MONEY, nullable=False, server_default="0"),
        sa.Column("spent", _MONEY, nullable=False, server_default="0"),
        sa.Column("threshold_fired_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("tenant_spend")
    op.drop_column("jobs", "routing")
    op.drop_column("jobs", "cost_estimate")
    op.drop_column("tenants", "retention_days")
    op.drop_column("tenants", "budget_alert_ratio")
    op.drop_column("tenants", "monthly_budget")
