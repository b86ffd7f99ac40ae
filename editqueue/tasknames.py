"""Names of the worker's tasks, the queue each runs on, and beat's schedule.

Shared by every publisher (the API's, the worker's, the outbox relay) and the worker, so
a name, a queue or a period is written once.

Time limits: the worker runs Celery's threads pool (Procfile, docker-compose.yml,
editqueue/standalone/processes.py), whose TaskPool.on_apply drops the `timeout` and
`soft_timeout` it is given, so Celery's `time_limit`/`soft_time_limit` would never fire
and none is set. The heartbeat is the time limit instead: a step holding its job past
`step_time_limit` is no longer renewed and loses the job (editqueue/jobs/heartbeat.py).
What else bounds a step: every vendor call and download has the
httpx timeout `provider_timeout` (worker/context.py); a step's job is held by a heartbeat
lease (editqueue/jobs/heartbeat.py) that comes free one lease after its process dies; and
the reaper ends every job at its deadline however its step is doing, after which a late
step changes nothing (its transitions require a live job).
"""

from __future__ import annotations

SUBMIT_JOB = "editqueue.submit_job"
ADVANCE_JOB = "editqueue.advance_job"
DELIVER_WEBHOOK = "editqueue.deliver_webhook"
# A doorbell: hand queued jobs to workers now rather than at the next beat tick.
DISPATCH = "editqueue.dispatch"
# The webhook system's background tasks; the attempts they start go to `webhooks`.
RECOVER_ENDPOINT = "editqueue.recover_webhook_endpoint"
COMPLETE_BATCH = "editqueue.complete_batch"
# Beat's periodic tasks.
SWEEP_JOBS = "editqueue.sweep_jobs"
SWEEP_DELIVERIES = "editqueue.sweep_deliveries"
RELAY_OUTBOX = "editqueue.relay_outbox"
PRUNE_OUTBOX = "editqueue.prune_outbox"
# Deletes history past each tenant's retention (editqueue.jobs.retention).
PURGE_HISTORY = "editqueue.purge_history"
REAP = "editqueue.reap"

JOBS_QUEUE = "jobs"
WEBHOOKS_QUEUE = "webhooks"
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (JOBS_QUEUE, WEBHOOKS_QUEUE, MAINTENANCE_QUEUE)
# Where a task missing from QUEUES goes, whoever publishes it.
DEFAULT_QUEUE = MAINTENANCE_QUEUE

# Webhooks get their own queue so a slow receiver never delays job work.
QUEUES = {
    SUBMIT_JOB: JOBS_QUEUE,
    ADVANCE_JOB: JOBS_QUEUE,
    DELIVER_WEBHOOK: WEBHOOKS_QUEUE,
    DISPATCH: MAINTENANCE_QUEUE,
    RECOVER_ENDPOINT: MAINTENANCE_QUEUE,
    COMPLETE_BATCH: MAINTENANCE_QUEUE,
    SWEEP_JOBS: MAINTENANCE_QUEUE,
    SWEEP_DELIVERIES: MAINTENANCE_QUEUE,
    RELAY_OUTBOX: MAINTENANCE_QUEUE,
    PRUNE_OUTBOX: MAINTENANCE_QUEUE,
    PURGE_HISTORY: MAINTENANCE_QUEUE,
    REAP: MAINTENANCE_QUEUE,
}

# Beat's entries: (entry name, task, period in seconds). Ticks are cheap and idempotent.
BEAT_SCHEDULE: tuple[tuple[str, str, float], ...] = (
    ("dispatch", DISPATCH, 1.0),
    ("sweep-jobs", SWEEP_JOBS, 1.0),
    ("sweep-deliveries", SWEEP_DELIVERIES, 1.0),
    ("relay-outbox", RELAY_OUTBOX, 2.0),
    # Ends jobs at their deadline (it looks one run ahead, see worker.tasks.reap).
    ("reap", REAP, 1.0),
    ("prune-outbox", PRUNE_OUTBOX, 3600.0),
    # Hourly is plenty for a limit counted in days; each run works in short batches.
    ("purge-history", PURGE_HISTORY, 3600.0),
)

# Seconds an unacknowledged message stays invisible before Redis hands it out again
# (acks are late): longer than any task runs. Publishers and the worker must agree on it.
BROKER_VISIBILITY_TIMEOUT = 1800


def queue_for(task: str) -> str:
    """The queue a task is published to."""
    return QUEUES.get(task, DEFAULT_QUEUE)
