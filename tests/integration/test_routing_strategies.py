"""Routing strategies on the live stack with the sandbox: 200 jobs each, one private stack.

The route of seededit-3.0 is vtrix:80,ark:20 (so `weighted` is its default strategy) and
seedream-4.0-edit goes to kie and acedata, with 6 and 2 slots; the other strategies are
asked for per job (`routing`) over the same routes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory
from editqueue.models import Job
from editqueue.providers.limits import Limit, ProviderLimits
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from tests.conftest import TenantClient, data_url, make_tenant, png_bytes
from tests.stack import Stack, create_database, drop_database, running_stack

JOBS = int(os.environ.get("ROUTING_TEST_JOBS", "200"))
PRICES = {"ark/seededit-3.0": {"per_image": "0.02"}, "vtrix/seededit-3.0": {"per_image": "0.03"}}


class Live:
    def __init__(self, stack: Stack, sessions: sessionmaker[Session], tenant: TenantClient):
        self.stack = stack
        self.sessions = sessions
        self.tenant = tenant

    def batch(self, count: int = JOBS, **defaults: Any) -> list[Job]:
        """Run `count` jobs as one batch; their rows once all ended, in the order sent."""
        body = {
            "jobs": [{"prompt": f"edit {i}"} for i in range(count)],
            "defaults": {
                "model": "seededit-3.0",
                "image": data_url(png_bytes((64, 64))),
                **defaults,
            },
        }
        response = self.tenant.client.post("/v1/batches", json=body)
        assert response.status_code in (200, 201, 202), response.text
        batch_id = response.json()["id"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            counts = self.tenant.client.get(f"/v1/batches/{batch_id}").json()["counts"]
            if counts["queued"] == counts["running"] == 0:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"batch still running: {counts}; {self._stuck(batch_id)}")
        with self.sessions() as session:
            rows = list(
                session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.id))
            )
        assert [j.status for j in rows] == ["succeeded"] * count, Counter(j.status for j in rows)
        return rows

    def _stuck(self, batch_id: str) -> str:
        with self.sessions() as session:
            job = session.scalar(
                select(Job).where(Job.batch_id == batch_id, Job.status == "running").limit(1)
            )
        if job is None:
            return "no running job"
        events = [(e["type"], e["detail"]) for e in self.tenant.events(job.id)]
        return f"{job.id} {job.stage} {job.provider}: {events}"


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory) -> Iterator[Live]:
    workdir: Path = tmp_path_factory.mktemp("routing")
    database = create_database(database_url)
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    redis_server.start()
    engine = make_engine(database)
    env = {
        # Generous leases and vendor timeouts: a loaded machine must not turn into failovers.
        "EDITQUEUE_LEASE_SECONDS": "30",
        "EDITQUEUE_PROVIDER_TIMEOUT": "20",
        "SANDBOX_LATENCY": "0",
        "SANDBOX_ARK_LATENCY": "0",
        "EDITQUEUE_PRICES": json.dumps(PRICES),
        "EDITQUEUE_ROUTES": "seededit-3.0=vtrix:80,ark:20;seedream-4.0-edit=kie,acedata",
        "EDITQUEUE_KIE_MAX_CONCURRENT": "6",
        "EDITQUEUE_ACEDATA_MAX_CONCURRENT": "2",
    }
    try:
        with running_stack(
            database_url=database,
            redis_url=redis_server.url,
            workdir=workdir / "stack",
            extra_env=env,
        ) as stack:
            sessions = make_session_factory(engine)
            tenant = make_tenant(sessions, stack.api_url)
            try:
                yield Live(stack, sessions, tenant)
            finally:
                tenant.client.close()
    finally:
        engine.dispose()
        redis_server.stop()
        drop_database(database)


def within_four_sigma(count: int, total: int, share: float) -> bool:
    sigma = math.sqrt(total * share * (1 - share))
    return abs(count - total * share) <= 4 * sigma


def test_the_routing_field_is_validated_stored_and_shown(live: Live) -> None:
    client = live.tenant.client
    body = {"model": "seededit-3.0", "prompt": "p", "image": data_url(png_bytes((64, 64)))}
    bad = client.post("/v1/jobs", json={**body, "routing": "random"})
    assert bad.status_code in (400, 422), bad.text
    assert bad.headers["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in bad.json()["errors"]] == ["routing"]
    bad_batch = client.post(
        "/v1/batches", json={"jobs": [{"prompt": "p"}], "defaults": {**body, "routing": "nope"}}
    )
    assert bad_batch.status_code in (400, 422)
    assert "routing" in json.dumps(bad_batch.json()["errors"])
    created = live.tenant.create_job(**body, routing="cheapest")
    assert created["routing"] == "cheapest"
    done = live.tenant.wait_job(created["id"])
    assert done["status"] == "succeeded" and done["routing"] == "cheapest"
    assert done["usage"]["routing"]["strategy"] == "cheapest"
    assert done["usage"]["routing"]["provider"] == done["provider"] == "ark"
    default = live.tenant.wait_job(live.tenant.create_job(**body)["id"])
    assert default["routing"] is None and default["usage"]["routing"]["strategy"] == "weighted"
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "least_busy" in json.dumps(schema["JobCreate"]["properties"]["routing"])


def test_cheapest_always_picks_the_cheapest_configured_vendor(live: Live) -> None:
    rows = live.batch(routing="cheapest")
    assert Counter(j.provider for j in rows) == {"ark": JOBS}
    assert {j.usage["routing"]["reason"] for j in rows} == {
        "cheapest: 0.02 USD/image vs vtrix 0.03 USD/image"
    }
    assert all(j.routing == "cheapest" and j.attempts == 1 for j in rows)


def test_under_cheapest_a_failing_cheapest_vendor_fails_over(live: Live) -> None:
    live.stack.sandbox_fault("ark", "create", "server_error", count=1, status=503)
    body = {"model": "seededit-3.0", "prompt": "p", "image": data_url(png_bytes((64, 64)))}
    job = live.tenant.wait_job(live.tenant.create_job(**body, routing="cheapest")["id"])
    assert job["status"] == "succeeded" and job["provider"] == "vtrix"
    outcomes = [(a["provider"], a["outcome"]) for a in job["usage"]["attempts"]]
    assert outcomes == [("ark", "failed"), ("vtrix", "succeeded")]
    assert job["usage"]["routing"]["provider"] == "vtrix"
    assert "passed over ark" in job["usage"]["routing"]["reason"]


def test_a_weighted_route_splits_80_20_within_sampling_error(live: Live) -> None:
    rows = live.batch()  # no `routing`: the weights of EDITQUEUE_ROUTES imply `weighted`
    counts = Counter(j.provider for j in rows)
    assert set(counts) == {"vtrix", "ark"}
    assert within_four_sigma(counts["vtrix"], JOBS, 0.8), counts
    assert {j.usage["routing"]["strategy"] for j in rows} == {"weighted"}


def test_least_busy_spreads_jobs_by_free_slots(live: Live) -> None:
    # Each create takes 0.3 s, so the 8 worker threads keep both vendors' slots busy.
    for vendor in ("kie", "acedata"):
        live.stack.sandbox_fault(vendor, "create", "latency", count=JOBS, seconds=0.3)
    try:
        rows = live.batch(model="seedream-4.0-edit", routing="least_busy")
    finally:
        live.stack.sandbox_reset()
    counts = Counter(j.provider for j in rows)
    assert counts["kie"] > counts["acedata"] > 0, counts
    free = re.compile(r"^least_busy: (\d+) of (\d+) slots free vs (\w+) (\d+) of (\d+) slots free")
    # A job whose preferred vendor filled up between the count and the claim says so.
    raced = [j for j in rows if "passed over" in j.usage["routing"]["reason"]]
    assert len(raced) < JOBS // 4, [j.usage["routing"] for j in raced]
    for job in rows:
        match = free.match(job.usage["routing"]["reason"])
        assert match, job.usage["routing"]
        if job not in raced:  # the chosen vendor had at least as many free slots as the other
            assert int(match.group(1)) >= int(match.group(4)), job.usage["routing"]


def test_fastest_converges_on_the_faster_vendor(live: Live) -> None:
    # Start unmeasured (the batches before measured both vendors as they are without faults).
    client = redis.Redis.from_url(live.stack.redis_url)
    try:
        stale = list(client.scan_iter("editqueue:provider:*:latency"))
        if stale:
            client.delete(*stale)
    finally:
        client.close()
    # Vtrix, first on the route, answers its creates 3 s late; Ark answers at once.
    live.stack.sandbox_fault("vtrix", "create", "latency", count=JOBS, seconds=3)
    try:
        rows = live.batch(routing="fastest")
    finally:
        live.stack.sandbox_reset()
    counts = Counter(j.provider for j in rows)
    late = Counter(j.provider for j in rows[JOBS // 2 :])
    assert counts["vtrix"] > 0, counts  # the route's first vendor was tried (and measured)
    assert late["ark"] >= 0.95 * (JOBS // 2), (counts, late)
    reasons = [j.usage["routing"]["reason"] for j in rows if j.provider == "ark"]
    assert any(
        re.match(r"fastest: p50 \d+\.\d{3} s vs vtrix p50 \d+\.\d{3} s$", r) for r in reasons
    )


def test_latency_samples_and_slot_counts_are_shared_through_redis(live: Live) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    limits = {"ark": Limit(max_concurrent=3)}
    one = ProviderLimits(live.stack.redis_url, limits, prefix=prefix)
    other = ProviderLimits(live.stack.redis_url, limits, prefix=prefix)
    for seconds in (0.5, 0.25, 2.0):
        one.record_latency("ark", seconds)
    assert other.latency_samples(["ark", "vtrix"]) == {"ark": [2.0, 0.25, 0.5], "vtrix": []}
    for i in range(60):
        one.record_latency("vtrix", float(i))
    assert len(other.latency_samples(["vtrix"])["vtrix"]) == 50
    assert one.acquire_slot("ark", "job_a", 60) and other.acquire_slot("ark", "job_b", 0.05)
    time.sleep(0.1)  # job_b's slot expired
    assert other.slot_usage(["ark", "kie"]) == {"ark": (1, 3), "kie": (0, None)}
    # the stack's own workers left their samples under the real prefix
    real = ProviderLimits(live.stack.redis_url, {})
    assert len(real.latency_samples(["ark"])["ark"]) >= 3


def test_a_success_with_its_duration_forgets_failures_and_records_the_sample(live: Live) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    limits = ProviderLimits(live.stack.redis_url, {}, prefix=prefix, failure_threshold=2)
    limits.record_failure("ark")
    limits.record_success("ark", task_seconds=1.5)  # one script: DEL failures + the sample
    limits.record_failure("ark")  # one failure in the window again, not two: no cooldown
    assert limits.cooldown_left("ark") == 0.0
    assert limits.latency_samples(["ark"]) == {"ark": [1.5]}
    limits.record_failure("ark")
    assert limits.cooldown_left("ark") > 0  # two in a row still cool the vendor down
