"""`batch.completed`: fired once, by the transaction that ends the last job of a batch.

`batches.live_jobs` holds the number of the batch's jobs that have not ended: the batch
is inserted with it set to its job count, in the transaction that inserts those jobs, and
every transaction that ends one of them takes it down by one with a single UPDATE of the
batch row (`job_ended`, from `lifecycle.complete_job`; a batch cancel takes it down once
by the number it ended, `counted_together`). A job ends exactly once (the finishing
claim), so the counter reaches 0 exactly once, when the last job ends.

Correct under concurrency because the UPDATE row-locks the batch until its transaction
commits: the finishers of one batch take turns, each decrementing the value the previous
one committed (READ COMMITTED re-reads the row after the wait), so exactly one of them sees
0, and it fires the event before it commits, in its own transaction: no task, no outbox
row and no broker message for the batch until it completes. The price is that finishers
of one batch serialise on its row for the rest of their transactions (the finish ends
with `budget.settle`, then commits). The claim stays `batches.completed_at`, set only
while NULL, so `complete_if_done`, which serves `complete_batch` messages queued by
versions before the counter, cannot fire a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from editqueue.config import Settings
from editqueue.db import DriverStatement
from editqueue.infra import outbox
from editqueue.models import JOB_STATUSES, Batch, Job
from editqueue.serialize import timestamp
from editqueue.webhooks.fanout import record_tenant_event

COMPLETED_EVENT = "batch.completed"
# The batch whose job ends the current transaction counts itself (see `counted_together`).
_TOGETHER_KEY = "editqueue.batch_counted_together"


def job_ended(session: Session, job: Job, *, settings: Settings) -> list[outbox.Message]:
    """Count the job's end against its batch; fires `batch.completed` if it was the last.

    Called once per job, from `lifecycle.complete_job` after its finishing claim: that claim
    is a conditional UPDATE from a live status that only one transaction wins, so a job is
    counted once and the counter cannot be taken down twice for it. Call it before
    `budget.settle`: every finishing transaction then locks the batch row before the
    tenant's spend row. Returns the messages to publish after commit.
    """
    if job.batch_id is None or session.info.get(_TOGETHER_KEY) == job.batch_id:
        return []
    return jobs_ended(session, job.batch_id, 1, settings=settings)


@contextmanager
def counted_together(session: Session, batch_id: str) -> Iterator[None]:
    """Within the block, ends of this batch's jobs are left for one `jobs_ended` call.

    For a transaction that ends many jobs of one batch (a batch cancel): counting each as it
    ends would lock the batch row between two job rows, while a worker ending one of those
    jobs locks its job row and then the batch row, a deadlock. Counted after the last,
    every job row is locked before the batch row, as in a single job's end.
    """
    previous = session.info.get(_TOGETHER_KEY)
    session.info[_TOGETHER_KEY] = batch_id
    try:
        yield
    finally:
        session.info[_TOGETHER_KEY] = previous


_COUNT_ENDED = DriverStatement(
    "UPDATE batches SET live_jobs = greatest(live_jobs - :ended, 0)"
    " WHERE id = :id AND live_jobs > 0"
    " RETURNING live_jobs, completed_at IS NULL AS open"
)


def jobs_ended(
    session: Session, batch_id: str, ended: int, *, settings: Settings
) -> list[outbox.Message]:
    """Take `ended` jobs off the batch's live count; the caller ended them in this transaction.

    Fires `batch.completed` when this call takes the count to 0; returns the messages to
    publish after commit.
    """
    if ended <= 0:
        return []
    # One statement per job end, with no read of the jobs table. The row lock it takes is
    # held to commit, so the batch's finishers take turns here. The guard keeps the count
    # from going negative (greatest() too, were `ended` ever more than remain).
    row = _COUNT_ENDED.execute(session, {"id": batch_id, "ended": ended}).fetchone()
    if row is None or row[0] > 0 or not row[1]:  # (live_jobs, open)
        return []
    # We took the count to 0 and hold the row lock, so completed_at cannot change under us;
    # it is set by a statement of its own because an UPDATE cannot return the value it
    # overwrote (before PostgreSQL 18), and the event must fire only if this call set it.
    batch = _claim(session, "UPDATE batches SET completed_at = now()", batch_id)
    if batch is None:
        return []
    return _fire(session, batch, settings=settings)


def claim_completion(session: Session, batch_id: str) -> Batch | None:
    """Mark the batch completed if every job ended and nobody did so before; else None.

    Only `complete_if_done` (old `complete_batch` messages) claims this way. It reads the
    jobs, not the counter, so a batch whose last jobs were ended by a version without the
    counter still completes; it zeroes the counter, and the claim on `completed_at IS NULL`
    makes this and `jobs_ended` exclusive: whichever sets it first fires, the other sees it.
    """
    return _claim(
        session,
        "UPDATE batches SET completed_at = now(), live_jobs = 0",
        batch_id,
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = :id"
        "   AND status IN ('queued', 'running'))"
        # A batch whose jobs are still being inserted is not complete.
        " AND (SELECT count(*) FROM jobs WHERE batch_id = :id) >= total",
    )


def _claim(session: Session, update: str, batch_id: str, condition: str = "") -> Batch | None:
    return session.scalars(
        select(Batch)
        .from_statement(
            text(
                f"{update} WHERE id = :id AND completed_at IS NULL{condition} RETURNING *"
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


def complete_if_done(
    session: Session, batch_id: str, *, settings: Settings
) -> list[outbox.Message]:
    """Fire `batch.completed` if this call wins the claim; returns messages to publish.

    Serves `complete_batch` messages queued before the counter existed; nothing queues
    new ones.
    """
    batch = claim_completion(session, batch_id)
    if batch is None:
        return []
    return _fire(session, batch, settings=settings)


def _fire(session: Session, batch: Batch, *, settings: Settings) -> list[outbox.Message]:
    # The counts are exact: this transaction ended the batch's last live job, and every
    # other finisher committed its job's end with its decrement, before our UPDATE got the
    # row lock. Each statement in READ COMMITTED takes a fresh snapshot, so these reads see
    # those commits, and our own job ends are in our own transaction.
    _, messages = record_tenant_event(
        session, batch.tenant_id, COMPLETED_EVENT, batch_data(session, batch), settings=settings
    )
    return messages
