"""The end-to-end baseline: a Celery chain of no-op tasks, each hop publishing the next.

Hops go to the queues our pipeline's hops use (maintenance: dispatch doorbell, jobs: submit,
webhooks: delivery) and are published the way the pipeline publishes (`send_task` with
its retry policy); the worker runs with our app's settings and command line, so the gap
to editqueue is the work inside the tasks: database steps, vendor call, storage, webhook.
The last hop counts itself in Redis.
"""

from __future__ import annotations

import os
import sys

import redis
from celery import Celery

from editqueue.standalone.processes import worker_argv

HOP = "bench.hop"
QUEUES = ("maintenance", "jobs", "webhooks")
DONE_KEY = "bench:chains-done"
# Our worker's settings that shape throughput; routing and the beat schedule stay ours.
_COPIED = (
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "worker_cancel_long_running_tasks_on_connection_loss",
    "worker_soft_shutdown_timeout",
    "task_ignore_result",
    "broker_connection_retry_on_startup",
    "broker_connection_max_retries",
    "broker_transport",  # worker.kombu_redis: the baseline gains from it too
    "broker_transport_options",
    "result_backend_transport_options",
    "visibility_timeout",
    "worker_hijack_root_logger",
)


def _make_app() -> Celery:
    from worker.celery_app import app as ours  # reads the same environment as our worker

    bare = Celery("bare", broker=os.environ["REDIS_URL"])
    bare.conf.update({name: ours.conf[name] for name in _COPIED})
    return bare


app = _make_app()
_counter = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.task(name=HOP)
def hop(index: int, length: int) -> None:
    """Publish the next hop, or count the chain done."""
    if index + 1 < length:
        publish(index + 1, length)
    else:
        _counter.incr(DONE_KEY)


def publish(index: int, length: int) -> None:
    """Send hop `index` of a chain of `length` to the queue its pipeline twin uses."""
    queue = QUEUES[min(index, len(QUEUES) - 1)]
    app.send_task(
        HOP, args=[index, length], queue=queue, retry=True, retry_policy={"max_retries": 2}
    )


def argv(concurrency: int) -> list[str]:
    """Our worker's command line, serving this app instead."""
    command = worker_argv(concurrency, loglevel="INFO")  # as tests.stack runs ours
    at = command.index("worker.celery_app")
    return [*command[:at], "bench.bare_celery", *command[at + 1 :]]


def done() -> int:
    """Chains finished so far."""
    return int(_counter.get(DONE_KEY) or 0)


if __name__ == "__main__":
    sys.exit("run through bench.e2e")
