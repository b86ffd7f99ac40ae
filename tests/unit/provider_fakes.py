"""Canned inputs and vendor answers for the adapter unit tests (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from editqueue.providers.base import EditRequest, InputImage

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def input_image(width: int = 640, height: int = 480) -> InputImage:
    """A tiny PNG input with a link the vendor would fetch."""
    return InputImage(PNG, "image/png", "https://files.test/in.png", width, height)


def edit_request(model: str = "seededit-3.0", **fields: Any) -> EditRequest:
    """An edit request; `fields` override the defaults."""
    values: dict[str, Any] = {"job_id": "job_1", "model": model, "prompt": "make it blue"}
    values.update(fields)
    if "images" not in values:
        values["images"] = [input_image()]
    return EditRequest(**values)


def canned(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering every request with `body` (JSON, or raw text/bytes)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str | bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler
