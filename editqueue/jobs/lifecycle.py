"""Ending a job: the finishing claim, its single terminal event and its webhooks, atomically.

A batch job's ending also takes one off its batch's count of live jobs (the ending that
takes it to 0 fires `batch.completed`, see `webhook_batches`), and settles the job's spend
against its tenant's month (`budget.settle`: its reservation released, its cost charged)
in the same transaction, so a job is charged exactly once, by whoever ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from editqueue.config import Settings
from editqueue.errors import JobFinished
from editqueue.infra import outbox
from editqueue.infra.storage import Storage
from editqueue.jobs import states as jobs
from editqueue.jobs.attempts import attempt_log
from editqueue.jobs.errors import timeout_error
from editqueue.jobs.status import LIVE, JobStatus
from editqueue.models import Job
from editqueue.spend import budget
from editqueue.spend.cost import total_cost
from editqueue.webhooks import batches as webhook_batches
from editqueue.webhooks.fanout import enqueue_job_event


@dataclass
class Finished:
    """The job as it ended, and the messages (webhooks) to publish after commit."""

    job: Job
    messages: list[outbox.Message]


def complete_job(
    session: Session,
    job_id: str,
    status: str,
    *,
    storage: Storage,
    settings: Settings,
    outputs: list[dict] | None = None,
    error: dict | None = None,
    usage: dict | None = None,
    attempt_log: list[dict[str, Any]] | None = None,
    from_statuses: Sequence[str] = (JobStatus.RUNNING,),
    settle: bool = True,
    provider: str | None = None,
) -> Finished | None:
    """Finish the job if nobody else has; the terminal event and deliveries go with it.

    `settle=False`: the caller ends several jobs in this transaction and settles their
    spend once, after the last (`budget.settle_all`), to keep the lock order.
    """
    job = jobs.finish(
        session,
        job_id,
        status,
        outputs=outputs,
        error=error,
        usage=usage,
        attempt_log=attempt_log,
        from_statuses=from_statuses,
        provider=provider,
    )
    if job is None:
        return None
    if usage is None:
        _total_billed_attempts(session, job)
    detail = {"error": error} if error else {"outputs": len(job.outputs)}
    event = jobs.record_event(session, job, jobs.TERMINAL_EVENT[status], detail, terminal=True)
    assert event is not None  # the finishing claim always writes its terminal event
    session.flush()
    ids = enqueue_job_event(session, job, event, storage=storage, settings=settings)
    ids += webhook_batches.job_ended(session, job, settings=settings)
    if settle:
        # Last, so the tenant's spend row stays locked for as short a time as possible.
        ids += budget.settle(session, job, settings=settings)
    return Finished(job, ids)


def _total_billed_attempts(session: Session, job: Job) -> None:
    # A job ended from outside its step (cancel, deadline) did not have its cost summed by
    # the pipeline; vendor attempts it made before may have been billed all the same.
    billed = total_cost(attempt_log(job))
    current = job.usage if isinstance(job.usage, dict) else {}
    if billed is not None and current.get("cost") != billed:
        job.usage = {**current, "cost": billed}
        jobs.set_usage(session, job.id, job.usage)


def expire_job(
    session: Session,
    job_id: str,
    provider: str | None,
    *,
    storage: Storage,
    settings: Settings,
) -> Finished | None:
    """Fail a live job with `timeout` at its deadline; None if it had already ended."""
    return complete_job(
        session,
        job_id,
        JobStatus.FAILED,
        storage=storage,
        settings=settings,
        error=timeout_error(provider),
        from_statuses=LIVE,
    )


def start_job(
    session: Session, job: Job, *, storage: Storage, settings: Settings
) -> list[outbox.Message]:
    """Record that a job started; `job.started` webhooks go to subscribers who opted in."""
    event = jobs.record_event(session, job, "job.started", {"attempt": job.attempts})
    if event is None:  # canceled before its claim committed
        return []
    session.flush()
    return enqueue_job_event(session, job, event, storage=storage, settings=settings)


def cancel_job(
    session: Session, tenant_id: str, job_id: str, *, storage: Storage, settings: Settings
) -> Finished:
    """Cancel a live job (409 job_finished if it already ended).

    The row keeps `provider`, `usage` and its attempt log as they stand: a vendor call
    still in flight adds its attempt when it returns (`jobs.note_attempt`), but no event.
    """
    jobs.get_job(session, tenant_id, job_id)
    finished = cancel_live(session, job_id, storage=storage, settings=settings)
    if finished is None:
        raise JobFinished(f"job {job_id} has already finished")
    return finished


def cancel_live(
    session: Session, job_id: str, *, storage: Storage, settings: Settings, settle: bool = True
) -> Finished | None:
    """End a job as canceled through the finishing claim; None if it had ended already."""
    return complete_job(
        session,
        job_id,
        JobStatus.CANCELED,
        storage=storage,
        settings=settings,
        from_statuses=LIVE,
        settle=settle,
    )
