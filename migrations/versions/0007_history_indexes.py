"""history indexes: every single filter of GET /v1/jobs pages on an index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00

Each list filter gets a (tenant_id, <column>, id DESC) b-tree so a page is an ordered
index range read of its 101 rows, whatever the history's size (bench/RESULTS.md,
"History at 1,000,000 jobs"). The metadata GIN index is rebuilt with jsonb_path_ops: the
filter is `@>` containment only, which that operator class serves with a smaller index.

The indexes are built with CREATE INDEX CONCURRENTLY in Alembic's autocommit block, so an
upgrade of a large jobs table takes no lock that stops writes (it reads the table twice
instead). A concurrent build that fails leaves an INVALID index behind; running the upgrade
again drops it first (`IF EXISTS` below) and rebuilds it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name → definition (the part after "ON jobs")
_NEW = {
    "ix_jobs_tenant_status_id": "(tenant_id, status, id DESC)",
    "ix_jobs_tenant_model": "(tenant_id, model, id DESC)",
    "ix_jobs_tenant_provider": "(tenant_id, provider, id DESC)",
    "ix_jobs_batch_id": "(batch_id, id DESC) WHERE batch_id IS NOT NULL",
    # Keyed by tenant: {tenant_id: metadata}, so a containment filter's GIN entry (a hash
    # of tenant → key → value under jsonb_path_ops) matches only that tenant's jobs.
    "ix_jobs_tenant_metadata": (
        "USING gin (jsonb_set('{}'::jsonb, ARRAY[tenant_id::text], metadata) jsonb_path_ops)"
    ),
}
# Replaced by the ones above (the status one is a prefix of ix_jobs_tenant_status_id).
_OLD = {
    "ix_jobs_tenant_status": "(tenant_id, status)",
    "ix_jobs_batch": "(batch_id) WHERE batch_id IS NOT NULL",
    "ix_jobs_metadata": "USING gin (metadata)",
}


def _create(name: str, definition: str) -> None:
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"CREATE INDEX CONCURRENTLY {name} ON jobs {definition}")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # New ones first, so the list queries always have an index while the old go.
        for name, definition in _NEW.items():
            _create(name, definition)
        for name in _OLD:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, definition in _OLD.items():
            _create(name, definition)
        for name in _NEW:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
