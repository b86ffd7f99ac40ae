"""Tasks of the webhook delivery system beyond single attempts: recovery, batch completion."""

from __future__ import annotations

import datetime as dt

from editqueue.tasknames import COMPLETE_BATCH, RECOVER_ENDPOINT
from editqueue.webhooks import batches as webhook_batches
from editqueue.webhooks import replay as webhook_replay
from worker import context
from worker.celery_app import app


@app.task(name=RECOVER_ENDPOINT)
def recover_webhook_endpoint(endpoint_id: str, since: str, until: str | None = None) -> int:
    """Re-send an endpoint's failed deliveries created in [since, until)."""
    ctx = context.get()
    return webhook_replay.recover_endpoint(
        ctx.sessions,
        ctx.publish,
        endpoint_id,
        dt.datetime.fromisoformat(since),
        dt.datetime.fromisoformat(until) if until else None,
        settings=ctx.settings,
    )


@app.task(name=COMPLETE_BATCH)
def complete_batch(batch_id: str) -> None:
    """Fire `batch.completed` if the batch's last job has ended and nobody fired it yet.

    Nothing queues this any more (the last job's own transaction fires the event); it stays
    for messages that versions before `batches.live_jobs` left in the outbox or the broker.
    """
    ctx = context.get()
    with ctx.sessions() as session, session.begin():
        ids = webhook_batches.complete_if_done(session, batch_id, settings=ctx.settings)
    ctx.publish(ids)
