"""Thin tasks: take ids, call editqueue, which re-reads rows and acts only on expected state."""

from __future__ import annotations

import functools
import logging

from editqueue import tasknames
from editqueue.infra import outbox
from editqueue.jobs import dispatch, pipeline
from editqueue.jobs import states as jobs
from editqueue.jobs.lifecycle import expire_job as expire
from editqueue.webhooks import delivery as deliveries
from editqueue.webhooks.signing import attempt_lease
from worker import context
from worker.celery_app import app

log = logging.getLogger(__name__)

SWEEP_LIMIT = 500
# Beat sweeps job timers every second; steps due before the next sweep (with room for a
# late tick) are leased now and published at their due time from this process, so a 2 s
# poll lands at 2 s rather than at the first sweep after it.
SWEEP_AHEAD = 1.25


@app.task(name=tasknames.SUBMIT_JOB)
def submit_job(job_id: str) -> None:
    """Claim a queued job and submit it to a vendor."""
    pipeline.run_submit(context.get(), job_id)


@app.task(name=tasknames.ADVANCE_JOB)
def advance_job(job_id: str, lease_id: str, report: dict | None = None) -> None:
    """Do a leased job's next step (poll, retry, take over from a dead worker).

    `report` is accepted and ignored, so messages queued before callbacks became mere
    wake-ups still run: the job polls the vendor instead."""
    pipeline.run_advance(context.get(), job_id, lease_id, report)


@app.task(name=tasknames.DELIVER_WEBHOOK)
def deliver_webhook(delivery_id: str, lease_id: str) -> None:
    """Send one webhook attempt."""
    ctx = context.get()
    deliveries.attempt_delivery(
        ctx.sessions, delivery_id, lease_id, client=ctx.user_urls, settings=ctx.settings
    )


@app.task(name=tasknames.DISPATCH)
def dispatch_jobs() -> int:
    """Hand the next fair share of queued jobs to workers."""
    ctx = context.get()
    return dispatch.dispatch_and_publish(
        ctx.sessions,
        ctx.publisher,
        window=ctx.settings.dispatch_window,
        default_cap=ctx.settings.tenant_max_running,
    )


@app.task(name=tasknames.SWEEP_JOBS)
def sweep_jobs() -> int:
    """Hand out jobs whose timer came; a lost message only costs one lease period."""
    ctx = context.get()
    with ctx.sessions() as session, session.begin():
        due = jobs.sweep_due(
            session,
            limit=SWEEP_LIMIT,
            lease_seconds=ctx.settings.lease_seconds,
            ahead=SWEEP_AHEAD,
        )
    for step in due:
        message = [step.job_id, step.lease_id]
        context.delayed().call_later(
            step.wait, functools.partial(ctx.publisher, tasknames.ADVANCE_JOB, message)
        )
    return len(due)


@app.task(name=tasknames.SWEEP_DELIVERIES)
def sweep_deliveries() -> int:
    """Hand out webhook attempts that are due."""
    ctx = context.get()
    lease_seconds = attempt_lease(ctx.settings.webhook_timeout)
    with ctx.sessions() as session, session.begin():
        due = deliveries.sweep_due(session, limit=SWEEP_LIMIT, lease_seconds=lease_seconds)
    for delivery_id, lease in due:
        ctx.publisher(tasknames.DELIVER_WEBHOOK, [delivery_id, lease])
    return len(due)


@app.task(name=tasknames.RELAY_OUTBOX)
def relay_outbox() -> int:
    """Publish outbox messages the fast path missed."""
    ctx = context.get()
    return outbox.relay(ctx.sessions, ctx.publisher)


@app.task(name=tasknames.PRUNE_OUTBOX)
def prune_outbox() -> int:
    """Drop long-published outbox rows."""
    return outbox.prune(context.get().sessions)


@app.task(name=tasknames.REAP)
def reap() -> int:
    """End jobs at their deadline; release dispatched jobs whose message may be lost.

    Beat runs this every second; deadlines due before the next run (with room for a late
    tick) are ended at their due time from this process, so a job ends within a moment of
    its deadline rather than at the first run after it. A process dying with some pending
    only delays them to the next run, which lists them again.
    """
    ctx = context.get()
    with ctx.sessions() as session, session.begin():
        due = jobs.due_deadlines(session, ahead=SWEEP_AHEAD, limit=SWEEP_LIMIT)
    for deadline in due:
        context.delayed().call_later(
            deadline.wait, functools.partial(expire_job, deadline.job_id, deadline.provider)
        )
    with ctx.sessions() as session, session.begin():
        dispatch.release_stale(session, older_than=ctx.settings.redispatch_after)
    return len(due)


def expire_job(job_id: str, provider: str | None) -> bool:
    """Fail a live job with `timeout` (a no-op once it ended); whether this call ended it."""
    ctx = context.get()
    with ctx.sessions() as session, session.begin():
        finished = expire(session, job_id, provider, storage=ctx.storage, settings=ctx.settings)
    if finished is None:
        return False
    ctx.job_ended(finished.messages)
    return True
