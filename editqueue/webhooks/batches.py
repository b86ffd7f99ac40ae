"""`batch.completed`: fired once, when the last job of a batch has ended.

The claim is `batches.completed_at`: one conditional UPDATE sets it only while it is NULL
and no job of the batch is live. It runs in a task of its own, queued through the outbox
by every finishing transaction of a batch job, rather than inside that transaction:
two jobs finishing at once would each still see the other live in their own snapshot,
and neither would fire. Run after commit, the last of those checks sees every job ended.
Counts are read here with our own query, so this does not depend on the batches API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from editqueue.config import Settings
from editqueue.infra import outbox
from editqueue.models import JOB_STATUSES, Batch, Job
from editqueue.serialize import timestamp
from editqueue.tasknames import COMPLETE_BATCH
from editqueue.webhooks.fanout import record_tenant_event

COMPLETED_EVENT = "batch.completed"
# Checks already queued by the current transaction (a batch cancel ends many jobs in one).
_QUEUED_KEY = "editqueue.batch_checks"


def request_completion_check(session: Session, job: Job) -> list[int]:
    """Queue a completion check for the job's batch after commit; returns outbox ids."""
    if job.batch_id is None:
        return []
    transaction = session.get_transaction()
    owner, queued = session.info.get(_QUEUED_KEY, (None, set()))
    if owner is not transaction:
        queued = set()
        session.info[_QUEUED_KEY] = (transaction, queued)
    if job.batch_id in queued:
        return []
    queued.add(job.batch_id)
    message = outbox.add(session, COMPLETE_BATCH, job.batch_id)
    session.flush()
    return [message.id]


def claim_completion(session: Session, batch_id: str) -> Batch | None:
    """Mark the batch completed if every job ended and nobody did so before; else None."""
    return session.scalars(
        select(Batch)
        .from_statement(
            text(
                "UPDATE batches SET completed_at = now()"
                " WHERE id = :id AND completed_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = :id"
                "   AND status IN ('queued', 'running'))"
                # A batch whose jobs are still being inserted is not complete.
                " AND (SELECT count(*) FROM jobs WHERE batch_id = :id) >= total"
                " RETURNING *"
            ).bindparams(id=batch_id)
        )
        .execution_options(populate_existing=True)
    ).one_or_none()


def batch_data(session: Session, batch: Batch) -> dict[str, Any]:
    """The batch object carried by `batch.completed`, with its final counts."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.batch_id == batch.id).group_by(Job.status)
    ).all()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    job_ids = list(session.scalars(select(Job.id).where(Job.batch_id == batch.id).order_by(Job.id)))
    return {
        "id": batch.id,
        "object": "batch",
        "counts": {"total": sum(counts.values()), **counts},
        "job_ids": job_ids,
        "metadata": batch.meta or {},
        "created_at": timestamp(batch.created_at),
        "completed_at": timestamp(batch.completed_at),
    }


def complete_if_done(session: Session, batch_id: str, *, settings: Settings) -> list[int]:
    """Fire `batch.completed` if this call wins the claim; returns outbox ids to publish."""
    batch = claim_completion(session, batch_id)
    if batch is None:
        return []
    _, ids = record_tenant_event(
        session, batch.tenant_id, COMPLETED_EVENT, batch_data(session, batch), settings=settings
    )
    return ids
