"""A private database, Redis and stack for one benchmark run, torn down afterwards.

Each run gets its own database on the machine's PostgreSQL server (or the embedded one the
tests fall back to) and its own embedded Redis, so other engineers' test runs sharing the
servers never see, flush or slow down its queues beyond the CPU they share.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.tenants import create_api_key, create_tenant
from tests import servers
from tests.stack import Stack, create_database, drop_database

# Far above any rate reached here, so the per-key GCRA still runs (one Redis round trip a
# request, as in production) but never refuses the load generator.
NO_REFUSALS = {"EDITQUEUE_RATE_LIMIT": "1000000"}
# tests.stack compresses timings for tests; a benchmark runs the shipped defaults, so a
# 4 s test lease cannot expire under load and turn into takeovers that inflate the work.
PRODUCTION_TIMINGS = {
    "EDITQUEUE_LEASE_SECONDS": "180",
    "EDITQUEUE_PROVIDER_TIMEOUT": "120",
    "EDITQUEUE_POLL_SCALE": "1",
    "EDITQUEUE_REDISPATCH_AFTER": "300",
    "EDITQUEUE_WEBHOOK_SCHEDULE": "5,300,1800,7200,18000,36000,36000",
    "EDITQUEUE_WEBHOOK_TIMEOUT": "15",
    "EDITQUEUE_DISPATCH_WINDOW": "64",
    "EDITQUEUE_PROVIDER_COOLDOWN": "30",
}


@dataclass
class Servers:
    """One run's database URL and Redis URL, plus the scratch directory."""

    database_url: str
    redis_url: str
    workdir: Path


@contextlib.contextmanager
def private_servers(keep: bool = False) -> Iterator[Servers]:
    """A fresh migrated database and a private Redis; dropped and stopped on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="eq-bench-"))
    database_url = create_database(servers.postgres_url())
    redis_server = servers.start_private_redis(workdir)
    try:
        yield Servers(database_url, redis_server.url, workdir)
    finally:
        redis_server.stop()
        drop_database(database_url)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def running_stack(
    where: Servers, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The whole service (sandbox, API, `workers` workers, beat) over `where`."""
    stack = Stack(
        database_url=where.database_url,
        redis_url=where.redis_url,
        workdir=where.workdir / "stack",
        extra_env={**PRODUCTION_TIMINGS, **NO_REFUSALS, **(extra_env or {})},
    )
    try:
        yield stack.start(workers=workers)
    finally:
        stack.stop()


def api_keys(database_url: str, count: int, *, max_running: int | None = None) -> list[str]:
    """`count` new tenants with one API key each (optionally with an in-flight cap)."""
    engine = make_engine(database_url, pool_size=1)
    keys = []
    with transaction(make_session_factory(engine)) as session:
        for _ in range(count):
            tenant = create_tenant(session, new_id("bench"))
            if max_running is not None:
                tenant.max_running_jobs = max_running
            keys.append(create_api_key(session, tenant))
    engine.dispose()
    return keys


def sandbox_image(stack: Stack, png: bytes) -> str:
    """Host an input image on the sandbox and return its URL (jobs then carry only a link)."""
    response = httpx.post(
        f"{stack.sandbox_url}/_control/files", content=png, headers={"content-type": "image/png"}
    )
    response.raise_for_status()
    return response.json()["url"]
