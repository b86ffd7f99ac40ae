"""Shared fixtures: one real stack per test session, a tenant per test, a webhook receiver."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.jobs.status import TERMINAL
from editqueue.tenants import create_api_key, create_tenant
from tests import servers
from tests.stack import Stack, create_database, drop_database

# -- servers and the stack ------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh, migrated database for the session."""
    from editqueue import migrate

    url = servers.postgres_url()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The session's Redis (its own DB index on a shared server, or an embedded one)."""
    return servers.redis_url()


@pytest.fixture(scope="session")
def stack(database_url: str, redis_url: str, tmp_path_factory) -> Iterator[Stack]:
    """Sandbox, API, worker and beat as real processes."""
    stack = Stack(
        database_url=database_url,
        redis_url=redis_url,
        workdir=tmp_path_factory.mktemp("stack"),
    )
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _fresh_vendor_state(request: pytest.FixtureRequest) -> None:
    """Each test on the shared stack starts with healthy vendors and no queued faults.

    Cooldowns and failure counts live in Redis and outlast the test that caused them;
    without this, one test's injected 503s would route the next test's job elsewhere.
    """
    if "stack" not in request.fixturenames:
        return
    stack: Stack = request.getfixturevalue("stack")
    stack.sandbox_reset()
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = list(client.scan_iter("editqueue:provider:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test database, for arranging and asserting."""
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def private_database(database_url: str) -> Iterator[str]:
    """A separate migrated database, for tests that run a stack of their own."""
    url = create_database(database_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def module_database(database_url: str) -> Iterator[str]:
    """A migrated database of the module's own, which no worker or beat looks at."""
    url = create_database(database_url)
    yield url
    drop_database(url)


# -- tenants ----------------------------------------------------------------------------------


@dataclass
class TenantClient:
    """A tenant with an API key and an authenticated client for the stack's API."""

    id: str
    name: str
    key: str
    client: httpx.Client
    secret: str

    def create_job(self, **body: Any) -> dict[str, Any]:
        """POST /v1/jobs and expect 202 (after honouring a 429's Retry-After, as clients do)."""
        for _ in range(10):
            response = self.client.post("/v1/jobs", json=body)
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        assert response.status_code == 202, response.text
        return response.json()

    def wait_job(self, job_id: str, timeout: float = 30.0, statuses=TERMINAL) -> dict[str, Any]:
        """Poll the job until it reaches one of `statuses`."""
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job.get("status") in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout}s: {job}")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events."""
        return self.client.get(f"/v1/jobs/{job_id}/events").json()["data"]


def make_tenant(sessions: sessionmaker[Session], api_url: str) -> TenantClient:
    """A new tenant and key, with a client."""
    with transaction(sessions) as session:
        tenant = create_tenant(session, new_id("t"))
        key = create_api_key(session, tenant)
        info = (tenant.id, tenant.name, tenant.webhook_secret)
    client = httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
    )
    return TenantClient(id=info[0], name=info[1], key=key, client=client, secret=info[2])


@contextmanager
def tenant_on(stack: Stack) -> Iterator[TenantClient]:
    """A new tenant on a stack of its own (not the session stack), with a client."""
    engine = make_engine(stack.database_url, pool_size=1, max_overflow=0)
    tenant = make_tenant(make_session_factory(engine), stack.api_url)
    try:
        yield tenant
    finally:
        tenant.client.close()
        engine.dispose()


@pytest.fixture
def tenant(stack: Stack, sessions: sessionmaker[Session]) -> Iterator[TenantClient]:
    """A fresh tenant on the session stack."""
    tc = make_tenant(sessions, stack.api_url)
    yield tc
    tc.client.close()


@pytest.fixture
def other_tenant(stack: Stack, sessions: sessionmaker[Session]) -> Iterator[TenantClient]:
    """A second tenant, for isolation tests."""
    tc = make_tenant(sessions, stack.api_url)
    yield tc
    tc.client.close()


# -- images -----------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (320, 240), seed: int = 0, fmt: str = "PNG") -> bytes:
    """A small synthetic image."""
    image = Image.new("RGB", size, (30 + seed * 40 % 200, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(240, 200, 40))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def fresh_get(tenant: TenantClient, path: str = "/v1/jobs") -> httpx.Response:
    """GET with the tenant's key on a new connection, so requests spread over the API's
    gunicorn workers."""
    return httpx.get(
        f"{tenant.client.base_url}{path}",
        headers={"Authorization": f"Bearer {tenant.key}", "Connection": "close"},
    )


def editqueue_cli(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m editqueue ARGS` as a subprocess: `env` over this process's environment (a
    None value removes the variable), output captured as text."""
    environ = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run(
        [sys.executable, "-m", "editqueue", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def data_url(data: bytes, fmt: str = "png") -> str:
    """A data: URL for image bytes."""
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode()}"


# -- webhook receiver -------------------------------------------------------------------------


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP endpoint recording every POST; `responses` scripts its status codes."""

    url: str
    requests: list[Received] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until at least `count` requests arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"receiver got {len(self.requests)} of {count} requests")

    def for_job(self, job_id: str) -> list[Received]:
        """Requests whose payload is about this job."""
        with self.lock:
            return [r for r in self.requests if r.json()["data"]["id"] == job_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback."""
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            rec = state["r"]
            with rec.lock:
                rec.requests.append(Received(dict(self.headers), body, time.time()))
                status = rec.responses.pop(0) if rec.responses else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["r"]
    server.shutdown()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def storage_path(stack: Stack) -> Path:
    """Where the stack's local storage keeps objects."""
    return stack.storage_dir
