"""The history retention task: a thin wrapper over editqueue.jobs.retention."""

from __future__ import annotations

from editqueue import tasknames
from editqueue.jobs import retention
from worker import context
from worker.celery_app import app


@app.task(name=tasknames.PURGE_HISTORY)
def purge_history() -> int:
    """Delete ended jobs (and their events, deliveries, objects) past their retention."""
    ctx = context.get()
    purged = retention.run_retention(
        ctx.sessions, ctx.storage, default_days=ctx.settings.retention_days
    )
    return purged.jobs
