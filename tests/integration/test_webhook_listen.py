"""`editqueue webhooks listen` as a real process: shows, verifies and forwards deliveries."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import standardwebhooks

from editqueue.standalone.ports import free_port
from editqueue.webhooks.signing import generate_secret, sign
from tests.conftest import Receiver, TenantClient

SECRET = generate_secret()


class Listening:
    """The running command, with its output lines in a queue."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 10.0) -> str:
        return self.lines.get(timeout=timeout)


@pytest.fixture
def listening(receiver: Receiver) -> Iterator[Listening]:
    port = free_port()
    argv = [sys.executable, "-m", "editqueue", "webhooks", "listen", "--port", str(port)]
    argv += ["--secret", SECRET, "--forward-to", receiver.url]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    listening = Listening(proc, f"http://127.0.0.1:{port}/")
    try:
        assert listening.next_line().startswith(f"listening on {listening.url}")
        yield listening
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _delivery(secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "type": "job.succeeded",
            "timestamp": "2026-01-01T00:00:00.000Z",
            "data": {"object": "job", "id": "job_1", "status": "succeeded"},
        }
    ).encode()
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": "evt_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret], "evt_1", ts, body),
    }
    return body, headers


def test_listen_prints_verifies_and_forwards(listening: Listening, receiver: Receiver) -> None:
    body, headers = _delivery(SECRET)
    response = httpx.post(listening.url, content=body, headers=headers)
    assert response.status_code == 200  # what the forward target answered
    line = listening.next_line()
    for part in ("job.succeeded", "evt_1", "job=job_1 status=succeeded", "signature verified"):
        assert part in line, line
    assert line.endswith("→ 200")
    [forwarded] = receiver.wait_for(1)
    assert forwarded.body == body
    standardwebhooks.Webhook(SECRET).verify(forwarded.body, forwarded.headers)


def test_listen_flags_a_bad_signature(listening: Listening, receiver: Receiver) -> None:
    body, headers = _delivery(generate_secret())
    receiver.responses = [400]
    response = httpx.post(listening.url, content=body, headers=headers)
    assert response.status_code == 400
    assert "signature INVALID" in listening.next_line()


def test_listen_fetches_the_tenant_secret_with_an_api_key(tenant: TenantClient) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "EDITQUEUE_WEBHOOK_SECRET"}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "EDITQUEUE_API_URL": str(tenant.client.base_url),
        "EDITQUEUE_API_KEY": tenant.key,
    }
    argv = [sys.executable, "-m", "editqueue", "webhooks", "listen", "--port", str(port)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    listening = Listening(proc, f"http://127.0.0.1:{port}/")
    try:
        assert "tenant's secret" in listening.next_line()
        assert listening.next_line().startswith(f"listening on {listening.url}")
        body, headers = _delivery(tenant.secret)
        assert httpx.post(listening.url, content=body, headers=headers).status_code == 204
        assert "signature verified" in listening.next_line()
        body, headers = _delivery(SECRET)
        assert httpx.post(listening.url, content=body, headers=headers).status_code == 400
        assert "signature INVALID" in listening.next_line()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
