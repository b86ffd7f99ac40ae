"""job-less deliveries index: history retention reaches tenant-event webhooks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00

Deliveries of tenant events (`batch.completed`, `webhook_endpoint.disabled`, budget
alerts, test sends) have no job, so the job cascade of retention never removed them. The
purge walks each tenant's old ones by id on this partial index; built CONCURRENTLY in
Alembic's autocommit block, as 0007's, so a large deliveries table keeps taking writes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_deliveries_tenant_jobless"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A failed concurrent build leaves an INVALID index: a rerun drops it first.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NAME}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {_NAME} ON deliveries (tenant_id, id)"
            " WHERE job_id IS NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NAME}")
