"""batch live-jobs counter: batch.completed fires from the last job's own transaction

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00

`batches.live_jobs` counts the batch's jobs that have not ended; each finishing
transaction decrements it, and the one that reaches 0 fires `batch.completed`
(editqueue.webhooks.batches). Adding a NOT NULL column with a constant default is a
catalog change only (no table rewrite). The backfill gives an open batch the count of its
queued and running jobs, and a completed one 0, so an old `complete_batch` message still in
the outbox or broker finds a completed batch already claimed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Only open batches with a live job are touched; every other batch keeps the default 0.
BACKFILL = """
UPDATE batches SET live_jobs = live.n
FROM (
    SELECT batch_id, count(*) AS n FROM jobs
    WHERE batch_id IS NOT NULL AND status IN ('queued', 'running')
    GROUP BY batch_id
) AS live
WHERE batches.id = live.batch_id AND batches.completed_at IS NULL
"""


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("live_jobs", sa.Integer(), nullable=False, server_default="0")
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_column("batches", "live_jobs")
