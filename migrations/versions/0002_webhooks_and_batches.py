"""webhook endpoints, delivery attempts, tenant events, batches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 15:41:45.517429
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_batches_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_batches_tenant_idempotency"),
    )
    op.create_index("ix_batches_tenant", "batches", ["tenant_id", "id"], unique=False)
    op.create_table(
        "tenant_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_events")),
    )
    op.create_index("ix_tenant_events_tenant", "tenant_events", ["tenant_id", "id"], unique=False)
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("events", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_webhook_endpoints_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_tenant", "webhook_endpoints", ["tenant_id", "id"], unique=False
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_ms", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(
        "ix_delivery_attempts_delivery",
        "delivery_attempts",
        ["delivery_id", "attempt"],
        unique=False,
    )
    op.add_column("api_keys", sa.Column("rate_limit", sa.Integer(), nullable=True))
    op.add_column("deliveries", sa.Column("endpoint_id", sa.String(length=40), nullable=True))
    op.create_index("ix_deliveries_endpoint", "deliveries", ["endpoint_id", "id"], unique=False)
    op.create_foreign_key(
        op.f("fk_deliveries_endpoint_id_webhook_endpoints"),
        "deliveries",
        "webhook_endpoints",
        ["endpoint_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_jobs_batch_id_batches"),
        "jobs",
        "batches",
        ["batch_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "tenants", sa.Column("previous_webhook_secret", sa.String(length=100), nullable=True)
    )
    op.add_column(
        "tenants",
        sa.Column("previous_webhook_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("tenants", sa.Column("max_running_jobs", sa.Integer(), nullable=True))


def downgrade() -> None:

    op.drop_column("tenants", "max_running_jobs")
    op.drop_column("tenants", "previous_webhook_secret_until")
    op.drop_column("tenants", "previous_webhook_secret")
    op.drop_constraint(op.f("fk_jobs_batch_id_batches"), "jobs", type_="foreignkey")
    op.drop_constraint(
        op.f("fk_deliveries_endpoint_id_webhook_endpoints"), "deliveries", type_="foreignkey"
    )
    op.drop_index("ix_deliveries_endpoint", table_name="deliveries")
    op.drop_column("deliveries", "endpoint_id")
    op.drop_column("api_keys", "rate_limit")
    op.drop_index("ix_delivery_attempts_delivery", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_webhook_endpoints_tenant", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_tenant_events_tenant", table_name="tenant_events")
    op.drop_table("tenant_events")
    op.drop_index("ix_batches_tenant", table_name="batches")
    op.drop_table("batches")
