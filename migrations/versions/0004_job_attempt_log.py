"""job attempt log in its own column

The routing's record of vendor attempts used to live in `usage.attempts`; it moves to
`jobs.attempt_log`, and the public `usage.attempts` is built from it (editqueue/serialize.py).
Rows written before keep their attempts in `usage` and are read from there
(editqueue/jobs/attempts.py), so no data is rewritten.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 03:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column(
            "attempt_log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("jobs", "attempt_log")
