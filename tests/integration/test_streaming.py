"""`Prefer: wait` and server-sent events over real HTTP, on the gevent API workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import TERMINAL, TenantClient, data_url, png_bytes


def seededit_body() -> dict[str, Any]:
    return {"model": "seededit-3.0", "prompt": "make it snowy", "image": data_url(png_bytes())}


@pytest.fixture
def stalling_image_url() -> Iterator[str]:
    """An image URL whose server holds every request until the test ends (a job that lasts)."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(30)
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/in.png"
    release.set()
    server.shutdown()


def read_sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream into messages (comments and retry lines skipped)."""
    message: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")


def stream_events(tenant: TenantClient, job_id: str, **headers: str) -> list[dict[str, str]]:
    headers = {"Accept": "text/event-stream", **headers}
    with tenant.client.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_sse(response))


# -- Prefer: wait ----------------------------------------------------------------------------


def test_prefer_wait_returns_a_fast_job_finished_with_200(tenant: TenantClient) -> None:
    response = tenant.client.post(
        "/v1/jobs", json=seededit_body(), headers={"Prefer": "wait=30"}, timeout=40
    )
    assert response.status_code == 200, response.text
    assert response.headers["Preference-Applied"] == "wait=30"
    assert response.json()["status"] == "succeeded"
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"


def test_prefer_wait_answers_202_for_a_job_that_outlasts_it(
    tenant: TenantClient, stalling_image_url: str
) -> None:
    started = time.monotonic()
    response = tenant.client.post(
        "/v1/jobs",
        json={**seededit_body(), "image": stalling_image_url},
        headers={"Prefer": "respond-async, wait=1"},
    )
    assert response.status_code == 202, response.text
    assert 0.9 <= time.monotonic() - started < 5
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.json()["status"] in ("queued", "running")
    tenant.client.post(f"/v1/jobs/{response.json()['id']}/cancel")


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait=soon", "wait=-3"])
def test_bad_prefer_wait_is_422_and_creates_nothing(tenant: TenantClient, prefer: str) -> None:
    response = tenant.client.post("/v1/jobs", json=seededit_body(), headers={"Prefer": prefer})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Prefer"
    assert tenant.client.get("/v1/jobs").json()["data"] == []


def test_other_preferences_are_ignored(tenant: TenantClient) -> None:
    response = tenant.client.post(
        "/v1/jobs", json=seededit_body(), headers={"Prefer": "return=minimal"}
    )
    assert response.status_code == 202
    assert "Preference-Applied" not in response.headers


# -- server-sent events ----------------------------------------------------------------------


def test_sse_streams_every_event_and_closes_after_the_terminal_one(tenant: TenantClient) -> None:
    job = tenant.create_job(**seededit_body())
    messages = stream_events(tenant, job["id"])
    types = [m["event"] for m in messages]
    assert types[0] == "job.created"
    assert types[-1] == "job.succeeded"
    assert "job.started" in types
    for message in messages:
        data = json.loads(message["data"])
        assert data["id"] == message["id"] and data["type"] == message["event"]
    # The stream carried the same events the JSON form lists.
    listed = [e["id"] for e in tenant.events(job["id"])]
    assert [m["id"] for m in messages] == listed[: len(messages)]


def test_sse_resumes_after_last_event_id(tenant: TenantClient) -> None:
    job = tenant.create_job(**seededit_body())
    tenant.wait_job(job["id"])
    events = tenant.events(job["id"])
    resumed = stream_events(tenant, job["id"], **{"Last-Event-ID": events[0]["id"]})
    terminal = next(i for i, e in enumerate(events) if e["type"] == "job.succeeded")
    assert [m["id"] for m in resumed] == [e["id"] for e in events[1 : terminal + 1]]
    # Resuming after the very last event of an ended job closes at once, empty.
    assert stream_events(tenant, job["id"], **{"Last-Event-ID": events[-1]["id"]}) == []


def test_sse_bad_last_event_id_and_foreign_job(
    tenant: TenantClient, other_tenant: TenantClient
) -> None:
    job = tenant.create_job(**seededit_body())
    sse = {"Accept": "text/event-stream"}
    bad = tenant.client.get(
        f"/v1/jobs/{job['id']}/events", headers={**sse, "Last-Event-ID": "nope"}
    )
    assert bad.status_code == 422
    assert other_tenant.client.get(f"/v1/jobs/{job['id']}/events", headers=sse).status_code == 404


def test_fifty_open_streams_do_not_block_other_requests(
    tenant: TenantClient, stalling_image_url: str
) -> None:
    job = tenant.create_job(**{**seededit_body(), "image": stalling_image_url})
    opened = threading.Semaphore(0)
    results: list[list[str]] = []
    lock = threading.Lock()
    client = httpx.Client(
        base_url=str(tenant.client.base_url),
        headers={"Authorization": f"Bearer {tenant.key}", "Accept": "text/event-stream"},
        limits=httpx.Limits(max_connections=60),
        timeout=60,
    )

    def follow() -> None:
        types = []
        with client.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            for index, message in enumerate(read_sse(response)):
                if index == 0:
                    opened.release()
                types.append(message["event"])
        with lock:
            results.append(types)

    threads = [threading.Thread(target=follow, daemon=True) for _ in range(50)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert opened.acquire(timeout=30), "a stream did not open"
    started = time.monotonic()
    listed = tenant.client.get("/v1/jobs")
    elapsed = time.monotonic() - started
    assert listed.status_code == 200
    assert elapsed < 1.0, f"GET /v1/jobs took {elapsed:.2f}s with 50 open streams"
    tenant.client.post(f"/v1/jobs/{job['id']}/cancel").raise_for_status()
    for thread in threads:
        thread.join(20)
    client.close()
    assert len(results) == 50
    assert all(types[-1] == "job.canceled" for types in results), results
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] in TERMINAL


def test_events_are_documented_as_a_stream(stack) -> None:
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    get_events = spec["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in get_events["responses"]["200"]["content"]
    create = spec["paths"]["/v1/jobs"]["post"]
    assert "Prefer" in {p["name"] for p in create["parameters"]}
