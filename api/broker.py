"""Publishing tasks by name: the API never imports the worker's task modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery import Celery

from editqueue.config import Settings
from editqueue.tasknames import BROKER_VISIBILITY_TIMEOUT, queue_for

# Keep publishing fast to fail: the outbox relay republishes anything that did not go out,
# so a web request must never wait on a dead broker.
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


def make_publisher_app(settings: Settings) -> Celery:
    """A Celery app used only to send messages."""
    app = Celery("editqueue-api", broker=settings.redis_url)
    app.conf.broker_transport_options = {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    }
    app.conf.broker_connection_retry_on_startup = False
    app.conf.task_ignore_result = True
    return app


def make_publisher(app: Celery) -> Any:
    """A Publisher: (task name, args) → sent to the task's queue, or raises."""

    def publish(task: str, args: list[Any]) -> None:
        app.send_task(
            task,
            args=args,
            queue=queue_for(task),
            # Without it send_task builds a result backend per greenlet (Celery keeps them
            # thread-local; building one scans entry points).
            ignore_result=True,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )

    return publish


def make_ping(url: str | None) -> Callable[[], None]:
    """A readiness probe for the broker."""

    def ping() -> None:
        if not url:
            raise RuntimeError("REDIS_URL is not set")
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()

    return ping
