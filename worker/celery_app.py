"""The Celery app, configured for at-least-once delivery on Redis (late acks, prefetch 1)."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from editqueue import logs, tasknames
from editqueue.config import get_settings
from editqueue.tasknames import BROKER_VISIBILITY_TIMEOUT
from worker import kombu_redis


def make_celery() -> Celery:
    """Build the app from the environment's settings."""
    settings = get_settings()
    app = Celery(
        "editqueue",
        broker=settings.redis_url,
        include=["worker.tasks", "worker.webhook_tasks", "worker.retention_tasks"],
    )
    transport = {
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
        "max_connections": 2 * settings.worker_concurrency + 10,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "health_check_interval": 25,
        "retry_on_timeout": True,
    }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # the jobs.attempts counter bounds redelivery loops
        # No task_time_limit: the threads pool ignores time limits (see editqueue.tasknames).
        worker_prefetch_multiplier=1,
        # The threads pool cannot cancel a running task (Celery 5.6 crashes the worker trying
        # on a broker loss); none needs it: a task redelivered meanwhile finds its lease gone.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_soft_shutdown_timeout=10.0,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport=kombu_redis.transport_for(settings.redis_url),
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": BROKER_VISIBILITY_TIMEOUT},
        visibility_timeout=BROKER_VISIBILITY_TIMEOUT,
        # The same rule as the API's publisher (api/broker.py): tasknames.queue_for.
        task_routes={name: {"queue": queue} for name, queue in tasknames.QUEUES.items()},
        task_default_queue=tasknames.DEFAULT_QUEUE,
        worker_hijack_root_logger=False,
        beat_schedule={
            entry: {"task": task, "schedule": seconds}
            for entry, task, seconds in tasknames.BEAT_SCHEDULE
        },
        # Beat ticks are cheap and idempotent; a stale one is worthless.
        beat_max_loop_interval=1.0,
    )
    return app


app = make_celery()


_PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


@setup_logging.connect
def _configure_logging(loglevel: str | None = None, **_kwargs: object) -> None:
    # Our JSON logs (job_id, tenant, provider on every record) instead of Celery's format.
    settings = get_settings()
    level = loglevel or settings.log_level
    logs.configure(level, json_logs=settings.log_format == "json")
    if logging.getLevelName(str(level).upper()) != logging.DEBUG:
        # Celery's INFO line for every task received and succeeded doubles our job events
        # (job.started, job.succeeded) and cost 1.8 % of worker CPU under load; its
        # warnings and errors (a task that raised) still come through.
        for name in _PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_init.connect
def _reset_after_fork(**_kwargs: object) -> None:
    # Prefork children must not share the parent's pooled sockets.
    from worker import context

    context.reset()
