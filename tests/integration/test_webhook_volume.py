"""Deliveries at volume on the real stack: nothing lost or doubled; a dead endpoint isolated."""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.broker import make_publisher, make_publisher_app
from editqueue.config import load_settings
from editqueue.db import transaction
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.infra.storage import open_storage
from editqueue.models import Delivery, Job
from editqueue.serialize import job_to_public
from editqueue.webhooks.endpoints import subscribed_endpoints
from editqueue.webhooks.fanout import Target, add_deliveries
from editqueue.webhooks.signing import event_body
from tests.conftest import Receiver, TenantClient, wait_until
from tests.integration.test_webhook_engine import _running_job
from tests.stack import Stack

TYPE = "job.succeeded"


def finish_jobs(stack: Stack, sessions: sessionmaker[Session], tenant_id: str, count: int) -> None:
    """`count` succeeded jobs, their terminal events fanned out by the core, then published.

    Rows are written in bulk and the events go through `add_deliveries` (the fan-out
    itself) rather than one finishing transaction per job: the subject here is delivery,
    and a 2-core box should spend its time on that.
    """
    settings = load_settings(
        REDIS_URL=stack.redis_url, webhook_timeout=float(stack.env["EDITQUEUE_WEBHOOK_TIMEOUT"])
    )
    storage = open_storage(f"file://{stack.storage_dir}", public_url="http://x", signing_key=b"k")
    jobs = [_running_job(new_id("job"), tenant_id) for _ in range(count)]
    for job in jobs:
        job.status, job.stage = "succeeded", None
    with transaction(sessions) as session:
        session.add_all(jobs)
        targets = [Target(e.url, e.id) for e in subscribed_endpoints(session, tenant_id, TYPE)]

    def fan_out(chunk: list[Job]) -> list[int]:
        ids: list[int] = []
        with transaction(sessions) as session:
            for job in chunk:
                data = job_to_public(job, storage, link_ttl=60)
                ids += add_deliveries(
                    session,
                    tenant_id=tenant_id,
                    job_id=job.id,
                    event_id=new_id("evt"),
                    event_type=TYPE,
                    body=event_body(TYPE, "2026-01-01T00:00:00.000Z", data),
                    targets=targets,
                    settings=settings,
                )
        return ids

    # A few writers at once: the setup is round trips, not work.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        messages = [i for ids in pool.map(fan_out, [jobs[n::4] for n in range(4)]) for i in ids]
    publisher = make_publisher(make_publisher_app(settings))
    assert outbox.publish_now(sessions, publisher, messages) == len(messages)


def _endpoint(tenant: TenantClient, url: str) -> dict:
    response = tenant.client.post("/v1/webhook-endpoints", json={"url": url})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_thousand_events_arrive_once_each(
    stack: Stack, tenant: TenantClient, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    endpoint = _endpoint(tenant, receiver.url)
    started = time.monotonic()
    finish_jobs(stack, sessions, tenant.id, 1000)
    receiver.wait_for(1000, timeout=90)

    def all_succeeded() -> list[Delivery] | None:
        with sessions() as session:
            rows = list(
                session.scalars(select(Delivery).where(Delivery.endpoint_id == endpoint["id"]))
            )
        return rows if len(rows) == 1000 and all(d.state == "succeeded" for d in rows) else None

    rows = wait_until(all_succeeded, timeout=30)
    elapsed = time.monotonic() - started
    received = collections.Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert set(received) == {d.event_id for d in rows}  # no event lost, none invented
    # A webhook-id arrives more than once only for an attempt that was retried.
    assert all(received[d.event_id] == d.attempt for d in rows), [
        (d.event_id, received[d.event_id], d.attempt)
        for d in rows
        if received[d.event_id] != d.attempt
    ]
    print(f"1000 deliveries in {elapsed:.1f}s")


class HangingServer:
    """Accepts webhook POSTs and never answers until released; counts requests in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = self.total = 0
        hanging = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with hanging.lock:
                    hanging.total += 1
                    hanging.in_flight += 1
                    hanging.most_in_flight = max(hanging.most_in_flight, hanging.in_flight)
                hanging.release.wait(30)
                with hanging.lock:
                    hanging.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def test_a_dead_endpoint_does_not_slow_a_live_one(
    stack: Stack,
    tenant: TenantClient,
    receiver: Receiver,
    hanging: HangingServer,
    sessions: sessionmaker[Session],
) -> None:
    dead = _endpoint(tenant, hanging.url)
    _endpoint(tenant, receiver.url)
    try:
        started = time.monotonic()
        finish_jobs(stack, sessions, tenant.id, 24)  # 24 events to each endpoint, interleaved
        receiver.wait_for(24, timeout=30)
        live_elapsed = time.monotonic() - started
        timeout = float(stack.env["EDITQUEUE_WEBHOOK_TIMEOUT"])
        # Unfenced, the 8 worker threads would sit on the dead endpoint 3 s at a time and
        # the live one would need ~24 × 3 / 8 = 9 s; fenced, it does not wait on it at all.
        assert live_elapsed < 2 * timeout, f"live endpoint took {live_elapsed:.1f}s"
        assert hanging.in_flight >= 1  # ...while the dead one is still hanging
        assert hanging.most_in_flight <= 2  # the fence: a quarter of the 8 threads
    finally:
        # Stop the dead endpoint's retries from occupying the shared stack after the test.
        tenant.client.patch(f"/v1/webhook-endpoints/{dead['id']}", json={"disabled": True})
