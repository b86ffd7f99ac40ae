"""The whole service as real processes for integration tests: sandbox, API, worker, beat.

Timings are compressed through the same environment variables an operator would set
(leases, poll back-off, webhook schedule), never by patching code.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from editqueue import migrate
from editqueue.standalone import processes
from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import wait_for_http

ROOT = Path(__file__).resolve().parent.parent

FAST_SETTINGS = {
    "EDITQUEUE_LEASE_SECONDS": "4",
    "EDITQUEUE_PROVIDER_TIMEOUT": "3",
    "EDITQUEUE_POLL_SCALE": "0.25",
    "EDITQUEUE_REDISPATCH_AFTER": "5",
    "EDITQUEUE_WEBHOOK_SCHEDULE": "0.5,1,1,2",
    "EDITQUEUE_WEBHOOK_TIMEOUT": "3",
    "EDITQUEUE_ALLOW_PRIVATE_URLS": "127.0.0.0/8,::1/128",
    "EDITQUEUE_SECRET_KEY": "test-secret-key",
    "EDITQUEUE_WORKER_CONCURRENCY": "8",
    "EDITQUEUE_DISPATCH_WINDOW": "16",
    "EDITQUEUE_PROVIDER_COOLDOWN": "2",
}


def create_database(server_url: str) -> str:
    """A fresh database on the same server as `server_url` (dropped by `drop_database`)."""
    name = f"eq_test_{os.getpid()}_{random.randrange(16**6):06x}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    migrate.upgrade(url)
    return url


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, closing its connections first."""
    name = urlsplit(url).path.lstrip("/")
    server = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Stack:
    """Sandbox, API, worker and beat processes over one database and one Redis."""

    def __init__(self, *, database_url: str, redis_url: str, workdir: Path, extra_env=None):
        self.database_url = database_url
        self.redis_url = redis_url
        self.workdir = workdir
        self.api_port = free_port()
        self.sandbox_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.storage_dir = workdir / "storage"
        self.env = {
            **os.environ,
            **FAST_SETTINGS,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "EDITQUEUE_STORAGE_URL": f"file://{self.storage_dir}",
            "EDITQUEUE_PUBLIC_URL": self.api_url,
            "EDITQUEUE_DATA_DIR": str(workdir),
            "SANDBOX_PUBLIC_URL": self.sandbox_url,
            "SANDBOX_LATENCY": "1.0",
        }
        for vendor in ("ark", "kie", "cometapi", "acedata", "vtrix"):
            self.env[f"EDITQUEUE_{vendor.upper()}_API_KEY"] = "sandbox-key"
            self.env[f"EDITQUEUE_{vendor.upper()}_BASE_URL"] = f"{self.sandbox_url}/{vendor}"
        self.env.update(extra_env or {})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes -------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start(self, *, workers: int = 1) -> Stack:
        """Start every process (and `workers` worker processes); wait for the API and sandbox."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._spawn("sandbox", processes.sandbox_argv(self.sandbox_port))
        self._spawn("api", processes.api_argv(f"127.0.0.1:{self.api_port}", quiet=True))
        self.start_worker()
        for index in range(2, workers + 1):
            node = f"worker-{index}@%h"
            self._spawn(f"worker-{index}", processes.worker_argv(8, loglevel="INFO", node=node))
        self._spawn("beat", processes.beat_argv(schedule=self.workdir / "beat-schedule"))
        wait_for_http(f"{self.sandbox_url}/_control/stats", timeout=30)
        wait_for_http(f"{self.api_url}/healthz", timeout=60)
        return self

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start a (replacement) worker process."""
        node = "worker-1@%h"
        return self._spawn("worker", processes.worker_argv(8, loglevel="INFO", node=node))

    def kill_worker(self) -> None:
        """SIGKILL the worker and every thread and child of it, as a crash would."""
        proc = self.procs.pop("worker")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL)."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()

    def log(self, name: str) -> str:
        """A process's output so far (for failure messages)."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    # -- sandbox control -----------------------------------------------------------------

    def sandbox_fault(self, vendor: str, op: str, kind: str, count: int = 1, **params) -> None:
        """Queue a fault for the next matching sandbox request(s)."""
        response = httpx.post(
            f"{self.sandbox_url}/_control/faults",
            json={"vendor": vendor, "op": op, "kind": kind, "count": count, "params": params},
        )
        response.raise_for_status()

    def sandbox_reset(self) -> None:
        """Forget queued faults and counters."""
        httpx.delete(f"{self.sandbox_url}/_control/faults").raise_for_status()

    def sandbox_stats(self) -> dict:
        """The sandbox's request counters."""
        return httpx.get(f"{self.sandbox_url}/_control/stats").json()


@contextlib.contextmanager
def api_only(
    server_url: str, redis_url: str, workdir: Path, extra_env: dict[str, str], *, workers: int = 2
) -> Iterator[Stack]:
    """Only an API (gunicorn workers, as in production) on a database of its own; no worker or
    beat. Stopped, and its database dropped, on exit."""
    url = create_database(server_url)
    stack = Stack(database_url=url, redis_url=redis_url, workdir=workdir, extra_env=extra_env)
    stack.workdir.mkdir(parents=True, exist_ok=True)
    bind = f"127.0.0.1:{stack.api_port}"
    try:
        stack._spawn("api", processes.api_argv(bind, workers=workers, quiet=True))
        wait_for_http(f"{stack.api_url}/healthz", timeout=60)
        yield stack
    finally:
        stack.stop()
        drop_database(url)


@contextlib.contextmanager
def running_stack(*, workers: int = 1, **kwargs) -> Iterator[Stack]:
    """A started Stack, stopped on exit."""
    stack = Stack(**kwargs)
    try:
        yield stack.start(workers=workers)
    finally:
        stack.stop()


@contextlib.contextmanager
def private_stack(
    server_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A started Stack on a database and an embedded Redis of its own, for settings (prices,
    limits) that must not leak into the session's shared stack; all removed on exit."""
    from editqueue.standalone.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    redis_server.start()
    url = create_database(server_url)
    try:
        with running_stack(
            database_url=url,
            redis_url=redis_server.url,
            workdir=workdir / "stack",
            extra_env=extra_env or {},
        ) as stack:
            yield stack
    finally:
        redis_server.stop()
        drop_database(url)
