"""Command lines of the service's processes, shared by the CLI and standalone mode."""

from __future__ import annotations

import sys
from pathlib import Path

from editqueue.tasknames import ALL_QUEUES

GEVENT_WORKER = "api.gunicorn_worker.GeventWorker"


def api_argv(
    bind: str, *, workers: int = 2, connections: int = 1000, quiet: bool = False
) -> list[str]:
    """gunicorn serving the API on gevent workers.

    `Prefer: wait` and event streams hold requests open for up to minutes; on gevent each
    is a sleeping greenlet (polling the database without holding a connection), not a
    pinned thread, so open streams cannot starve ordinary requests. psycopg 3 and redis-py
    cooperate with gevent's patched sockets (see api/gunicorn_worker.py).
    """
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers)]
    argv += ["--worker-class", GEVENT_WORKER, "--worker-connections", str(connections)]
    # On stop, gunicorn's gevent worker waits for every open connection, idle keep-alive
    # ones included, for up to the graceful timeout (30 s by default): longer than
    # supervisors wait. 5 s lets requests in progress finish; clients retry the rest.
    argv += ["--graceful-timeout", "5"]
    argv += ["--log-level", "warning" if quiet else "info"]
    if not quiet:
        argv += ["--access-logfile", "-"]
    return [*argv, "api.wsgi:app"]


def worker_argv(concurrency: int, *, loglevel: str = "INFO", node: str | None = None) -> list[str]:
    """A Celery worker on every queue; threads, because the work is waiting on I/O.

    `node`: its Celery node name (`-n`), which must differ between the workers of one host
    for remote control (`celery inspect`) to tell their replies apart."""
    argv = [
        *(sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"),
        *("--pool", "threads", "--concurrency", str(concurrency)),
        *("--queues", ",".join(ALL_QUEUES), "--loglevel", loglevel),
        *("--without-gossip", "--without-mingle"),
    ]
    return [*argv, "--hostname", node] if node else argv


def beat_argv(*, schedule: Path | None = None, loglevel: str = "INFO") -> list[str]:
    """The beat scheduler (exactly one per deployment)."""
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat"]
    argv += ["--loglevel", loglevel]
    if schedule is not None:
        argv += ["--schedule", str(schedule)]
    return argv


def sandbox_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The vendor emulators."""
    return [sys.executable, "-m", "sandbox", "--host", host, "--port", str(port)]
