"""Leases with a heartbeat: a dead worker's step is taken over quickly, a live one's never.

The stack here runs with the production lease and vendor timeout (the defaults), not the
compressed test values, since how soon a takeover comes is what is measured.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.config import Settings
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.jobs.heartbeat import Heartbeat
from editqueue.models import Job
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from editqueue.tenants import create_tenant
from tests.conftest import TenantClient, data_url, make_tenant, png_bytes, wait_until
from tests.integration.test_webhook_engine import _running_job
from tests.stack import Stack

LEASE = Settings.model_fields["lease_seconds"].default
TAKEOVER_BOUND = 30.0


@pytest.fixture
def factory(private_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(private_database)
    yield make_session_factory(engine)
    engine.dispose()


def test_the_heartbeat_renews_only_leases_still_held(factory: sessionmaker[Session]) -> None:
    now = dt.datetime.now(dt.UTC)
    with transaction(factory) as session:
        tenant = create_tenant(session, new_id("t"))
        mine, lost = (_running_job(new_id("job"), tenant.id, next_poll_at=now) for _ in "ab")
        mine.lease_id, lost.lease_id = "step-a", "someone-else"
        session.add_all([mine, lost])
    heartbeat = Heartbeat(factory, 60.0)
    with heartbeat.step() as a, heartbeat.step() as b:
        a.hold(mine.id, "step-a")
        b.hold(lost.id, "step-b")  # taken over since: its lease id changed
        assert heartbeat.renew() == 1
    assert heartbeat.held() == 0
    with factory() as session:
        rows = session.execute(select(Job.id, Job.next_poll_at).where(Job.tenant_id == tenant.id))
        due = dict(rows.tuples().all())
    assert (due[mine.id] - now).total_seconds() > 55
    assert due[lost.id] == now


def test_a_step_past_its_time_limit_is_no_longer_renewed(
    factory: sessionmaker[Session],
) -> None:
    now = dt.datetime.now(dt.UTC)
    with transaction(factory) as session:
        tenant = create_tenant(session, new_id("t"))
        job = _running_job(new_id("job"), tenant.id, next_poll_at=now)
        job.lease_id = "stuck"
        session.add(job)
    heartbeat = Heartbeat(factory, 60.0, time_limit=0.5)
    with heartbeat.step() as step:
        step.hold(job.id, "stuck")
        assert heartbeat.renew() == 1
        renewed = _lease_end(factory, job.id)
        time.sleep(0.7)
        assert heartbeat.renew() == 0
        assert heartbeat.held() == 0
    assert _lease_end(factory, job.id) == renewed  # left to run out: the sweep takes it


def _lease_end(factory: sessionmaker[Session], job_id: str) -> dt.datetime | None:
    with factory() as session:
        return session.get_one(Job, job_id).next_poll_at


@pytest.fixture
def production_stack(private_database: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own (own Redis too) with the default lease and vendor timeout."""
    redis_server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    redis_server.start()
    stack = Stack(
        database_url=private_database, redis_url=redis_server.url, workdir=tmp_path / "stack"
    )
    for name in ("EDITQUEUE_LEASE_SECONDS", "EDITQUEUE_PROVIDER_TIMEOUT"):
        stack.env.pop(name)
    try:
        yield stack.start()
    finally:
        stack.stop()
        redis_server.stop()


def _creates(stack: Stack, vendor: str) -> int:
    return stack.sandbox_stats()[vendor]["requests"].get("create", 0)


def _attempts_started(tenant: TenantClient, job_id: str) -> int:
    return [e["type"] for e in tenant.events(job_id)].count("attempt.started")


def test_a_dead_workers_call_is_taken_over_within_30s_and_a_live_workers_slow_call_never(
    production_stack: Stack, private_database: str
) -> None:
    stack = production_stack
    engine = make_engine(private_database)
    tenant = make_tenant(make_session_factory(engine), stack.api_url)
    image = data_url(png_bytes())
    try:
        # A KIE create that hangs; its worker is SIGKILLed inside the call.
        stack.sandbox_fault("kie", "create", "latency", seconds=120)
        doomed = tenant.create_job(
            model="seedream-4.0-edit", prompt="crash", image=image, provider="kie"
        )
        wait_until(lambda: _attempts_started(tenant, doomed["id"]) == 1, timeout=30)
        stack.kill_worker()
        killed_at = time.monotonic()
        stack.start_worker()
        # Meanwhile the new worker makes an Ark call that outlasts the lease.
        slow = tenant.create_job(
            model="seededit-3.0",
            prompt="slow",
            image=image,
            provider="ark",
            provider_options={"_sandbox": {"fault": "latency", "seconds": LEASE + 5}},
        )
        wait_until(lambda: _creates(stack, "kie") == 2, timeout=TAKEOVER_BOUND + 5)
        took = time.monotonic() - killed_at
        assert took < TAKEOVER_BOUND, f"taken over {took:.1f}s after the kill"

        done = tenant.wait_job(slow["id"], timeout=LEASE + 40)
        assert done["status"] == "succeeded", (done, stack.log("worker"))
        assert done["attempts"] == 1 and _attempts_started(tenant, slow["id"]) == 1
        assert _creates(stack, "ark") == 1  # exactly one vendor submit for the slow job
        parse = dt.datetime.fromisoformat
        ran = (parse(done["completed_at"]) - parse(done["started_at"])).total_seconds()
        assert ran > LEASE  # the call did outlast the lease

        recovered = tenant.wait_job(doomed["id"], timeout=30)
        assert recovered["status"] == "succeeded", recovered
        assert recovered["attempts"] == 2
    finally:
        tenant.client.close()
        engine.dispose()
