"""Run the sandbox (and a callback receiver) on free loopback ports for tests.

with running_sandbox({"latency": 0.5}) as base_url:
    ...  # vendor base URLs are f"{base_url}/ark", f"{base_url}/kie"
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import pytest
from flask import Flask, request
from PIL import Image, ImageDraw
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.app import create_app

# Any non-empty bearer key passes a sandbox started without `api_keys`.
AUTH = {"Authorization": "Bearer test-key"}

T = TypeVar("T")


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 (free port) in a daemon thread; yield its base URL."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval keeps shutdown (and so each test) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def running_sandbox(config: Mapping[str, Any] | None = None) -> Iterator[str]:
    """A sandbox with `config` (fast defaults for tests) at the yielded base URL."""
    settings: dict[str, Any] = {"latency": 0.6, "ark_latency": 0.0}
    settings.update(config or {})
    with serving(create_app(settings)) as base_url:
        yield base_url


@contextlib.contextmanager
def sandbox_client(base_url: str) -> Iterator[httpx.Client]:
    """A keyed client for the sandbox, which is first reset to no tasks, faults or counters."""
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as http:
        http.post("/_control/reset")
        yield http


def poll_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 5.0) -> T:
    """Call `read` until `done` accepts what it returns; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = read()
        if done(result):
            return result
        time.sleep(0.05)
    raise AssertionError("task did not finish")


@dataclasses.dataclass(frozen=True)
class ReceivedCallback:
    """One request the callback receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class CallbackReceiver:
    """Where vendor callbacks land during a test."""

    url: str
    received: list[ReceivedCallback]
    arrived: threading.Condition

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedCallback]:
        """Block until `count` callbacks have arrived (or the timeout passes)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)


@contextlib.contextmanager
def running_receiver() -> Iterator[CallbackReceiver]:
    """An HTTP endpoint that records every POST to `/callback` and answers 200."""
    app = Flask("callback-receiver")
    received: list[ReceivedCallback] = []
    arrived = threading.Condition()

    @app.post("/callback")
    def callback() -> tuple[str, int]:
        with arrived:
            received.append(ReceivedCallback(dict(request.headers), request.get_data()))
            arrived.notify_all()
        return "", 200

    with serving(app) as base_url:
        yield CallbackReceiver(f"{base_url}/callback", received, arrived)


def sample_image(
    size: tuple[int, int] = (640, 480),
    image_format: str = "PNG",
    colour: tuple[int, int, int] = (40, 120, 200),
) -> bytes:
    """A small test picture: a colour field with a darker square, so edits have detail."""
    picture = Image.new("RGB", size, colour)
    ImageDraw.Draw(picture).rectangle(
        (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(20, 20, 20)
    )
    out = io.BytesIO()
    picture.save(out, format=image_format)
    return out.getvalue()


def upload_image(base_url: str, data: bytes, content_type: str = "image/png") -> str:
    """Host input bytes on the sandbox (`POST /_control/files`) and return their link."""
    response = httpx.post(
        f"{base_url}/_control/files", content=data, headers={"Content-Type": content_type}
    )
    response.raise_for_status()
    return response.json()["url"]


def emulator_fixtures(config: Mapping[str, Any] | None = None) -> tuple[Any, Any, Any, Any]:
    """The fixtures an emulator test module needs, to bind at its top level:

    base_url, image_url, client, receiver = emulator_fixtures({"latency": 0.2})

    `base_url`: one sandbox with `config` for the module; `image_url`: a sample picture hosted
    on it; `client`: keyed, on a sandbox reset for each test; `receiver`: a callback receiver.
    """

    @pytest.fixture(scope="module")
    def base_url() -> Iterator[str]:
        with running_sandbox(config) as url:
            yield url

    @pytest.fixture(scope="module")
    def image_url(base_url: str) -> str:
        return upload_image(base_url, sample_image())

    @pytest.fixture
    def client(base_url: str) -> Iterator[httpx.Client]:
        with sandbox_client(base_url) as http:
            yield http

    @pytest.fixture
    def receiver() -> Iterator[CallbackReceiver]:
        with running_receiver() as callbacks:
            yield callbacks

    return base_url, image_url, client, receiver
