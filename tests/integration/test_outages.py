"""Outages of the things we depend on: PostgreSQL, Redis, a vendor, storage, receivers.

Each test breaks one dependency of a running stack and checks that the service answers
clearly meanwhile and converges afterwards: every job ends, nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from editqueue import migrate
from editqueue.db import make_engine, make_session_factory
from editqueue.standalone.embedded import EmbeddedPostgres, EmbeddedRedis
from editqueue.standalone.ports import free_port
from tests.conftest import (
    Receiver,
    TenantClient,
    data_url,
    fresh_get,
    make_tenant,
    png_bytes,
    wait_until,
)
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: as root the server runs as its own user, and pytest
    # resets /tmp/pytest-of-root to 0700 when another session starts.
    root = Path(tempfile.mkdtemp(prefix="eq-outage-pg-"))
    server = EmbeddedPostgres(root / "pgdata")
    server.start()
    migrate.upgrade(server.url)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def test_postgres_restart_gives_503_meanwhile_and_recovers_without_a_restart(
    own_postgres: EmbeddedPostgres, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with running_stack(
        database_url=own_postgres.url, redis_url=own_redis.url, workdir=tmp_path / "stack"
    ) as stack:
        engine = make_engine(own_postgres.url)
        tenant = make_tenant(make_session_factory(engine), stack.api_url)
        engine.dispose()
        before = tenant.create_job(
            model="seedream-4.0-edit", prompt="across the outage", image=data_url(png_bytes())
        )
        own_postgres.stop()
        response = tenant.client.get("/v1/jobs")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "service_unavailable"
        ready = httpx.get(f"{stack.api_url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unreachable"
        time.sleep(2)  # workers and beat keep failing against the dead database meanwhile
        own_postgres.start()
        wait_until(lambda: tenant.client.get("/v1/jobs").status_code == 200, timeout=30)
        assert httpx.get(f"{stack.api_url}/readyz").status_code == 200
        after = tenant.create_job(
            model="seededit-3.0", prompt="after the outage", image=data_url(png_bytes())
        )
        for job in (before, after):
            done = tenant.wait_job(job["id"], timeout=60)
            assert done["status"] == "succeeded", (done, stack.log("worker")[-3000:])
        tenant.client.close()


def test_redis_restart_mid_run_loses_no_job(
    private_database: str, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with running_stack(
        database_url=private_database, redis_url=own_redis.url, workdir=tmp_path / "stack"
    ) as stack:
        engine = make_engine(private_database)
        tenant = make_tenant(make_session_factory(engine), stack.api_url)
        engine.dispose()
        image = data_url(png_bytes())
        ids = [
            tenant.create_job(model=model, prompt=f"restart {i}", image=image)["id"]
            for i in range(4)
            for model in ("seededit-3.0", "seedream-4.0-edit")
        ]
        assert all(_rate_limited(tenant) for _ in range(6))  # both API workers
        own_redis.stop()
        time.sleep(1)
        own_redis.start()
        # The rate limiter's pooled connections died with the server: each is replaced on its
        # first use, instead of the request passing unlimited (and the next 5 s with it).
        assert all(_rate_limited(tenant) for _ in range(6))
        for job_id in ids:
            done = tenant.wait_job(job_id, timeout=90)
            assert done["status"] == "succeeded", (done, stack.log("worker")[-3000:])
        tenant.client.close()


def _rate_limited(tenant: TenantClient) -> bool:
    """Whether a request on a new connection (to either API worker) was counted."""
    response = fresh_get(tenant)
    response.raise_for_status()
    return "RateLimit-Limit" in response.headers


def dt_seconds(stamp: str) -> float:
    """An API timestamp as epoch seconds."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _pinned_to_ark(tenant: TenantClient) -> dict:
    """A job pinned to Ark: unpinned, it would simply fail over to another vendor."""
    return tenant.create_job(
        model="seededit-3.0",
        prompt="outage",
        image=data_url(png_bytes()),
        deadline_seconds=120,
        provider="ark",
    )


def test_a_vendor_down_for_a_while_delays_jobs_within_their_retry_budget(
    stack: Stack, tenant: TenantClient
) -> None:
    # Two 503s, then the vendor is back: the third and last attempt of the budget succeeds.
    stack.sandbox_fault("ark", "create", "server_error", count=2, status=503)
    job = _pinned_to_ark(tenant)
    done = tenant.wait_job(job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 3
    failed = [a for a in done["usage"]["attempts"] if a["outcome"] == "failed"]
    assert len(failed) == 2
    assert {a["error"] for a in failed} == {"provider_unavailable"}


def test_a_vendor_down_longer_than_the_budget_fails_the_job_promptly(
    stack: Stack, tenant: TenantClient
) -> None:
    stack.sandbox_fault("ark", "create", "server_error", count=10_000, status=503)
    job = _pinned_to_ark(tenant)
    done = tenant.wait_job(job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert done["attempts"] == 3
    assert done["error"]["code"] == "provider_unavailable"
    assert done["error"]["provider"] == "ark"
    elapsed = dt_seconds(done["completed_at"]) - dt_seconds(done["created_at"])
    assert elapsed < 60, f"failed after {elapsed:.1f} s, not within the budget's back-off"


def test_storage_failing_writes_is_retried_until_it_works(
    stack: Stack, tenant: TenantClient, tmp_path: Path
) -> None:
    (tmp_path / "in.png").write_bytes(png_bytes((200, 200), seed=4))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A file where the tenant's directory should be: every write under it fails.
    blocker = stack.storage_dir / tenant.id
    stack.storage_dir.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/in.png"
        job = tenant.create_job(model="seededit-3.0", prompt="storage", image=url)
        wait_until(lambda: "step.retry" in [e["type"] for e in tenant.events(job["id"])])
        assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
        blocker.unlink()
        done = tenant.wait_job(job["id"], timeout=60)
    finally:
        server.shutdown()
        if blocker.is_file():
            blocker.unlink()
    assert done["status"] == "succeeded", done


def test_a_hanging_webhook_receiver_times_out_and_is_retried(
    stack: Stack, tenant: TenantClient, receiver: Receiver
) -> None:
    hang = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hang.wait(20)  # longer than the stack's webhook timeout

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hanging_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        slow = tenant.create_job(
            model="seededit-3.0",
            prompt="hang",
            image=data_url(png_bytes()),
            webhook_url=hanging_url,
        )
        fine = tenant.create_job(
            model="seededit-3.0",
            prompt="fine",
            image=data_url(png_bytes()),
            webhook_url=receiver.url,
        )
        assert tenant.wait_job(slow["id"])["status"] == "succeeded"
        assert tenant.wait_job(fine["id"])["status"] == "succeeded"
        receiver.wait_for(1, timeout=15)

        def timed_out() -> bool:
            data = tenant.client.get(f"/v1/jobs/{slow['id']}/deliveries").json()["data"]
            return bool(data) and data[0]["attempt"] >= 1 and data[0]["error"] is not None

        wait_until(timed_out, timeout=30)
        delivery = tenant.client.get(f"/v1/jobs/{slow['id']}/deliveries").json()["data"][0]
        assert "timed out" in delivery["error"]
        assert delivery["state"] in ("pending", "failed")
    finally:
        hang.set()
        server.shutdown()
