"""VtrixProvider against the Vtrix emulator over loopback: tasks, polling, failures.

Also: images the API refuses never reach any vendor (the sandbox's counters stay still).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.base import EditRequest, InputImage
from editqueue.providers.vtrix import VtrixProvider
from tests.conftest import TenantClient, data_url
from tests.integration.sandbox_server import running_sandbox
from tests.integration.vendor_contract import (
    API_KEY,
    edit_request,
    fault,
    fresh_adapter,
    hanging_poll_error,
    hosted_input,
    poll_error,
    poll_until_done,
    queue_fault,
    submit_error,
    wrong_key_error,
)
from tests.stack import Stack


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox({"api_keys": API_KEY, "latency": 0.3}) as url:
        yield url


@pytest.fixture(scope="module")
def input_image(sandbox_url: str) -> InputImage:
    return hosted_input(sandbox_url)


@pytest.fixture
def vtrix(sandbox_url: str) -> Iterator[VtrixProvider]:
    with fresh_adapter(VtrixProvider, sandbox_url, "vtrix") as provider:
        yield provider


def _request(image: InputImage, **fields: Any) -> EditRequest:
    values: dict[str, Any] = {
        "prompt": "change the clothes to pink",
        "images": [image],
        "seed": 5,
        "guidance_scale": 5.5,
    }
    return edit_request(**{**values, **fields})


def test_create_poll_and_download(vtrix: VtrixProvider, input_image: InputImage) -> None:
    created = vtrix.submit(_request(input_image, guidance_scale=10.0))
    assert created.state == "running" and created.task_id and created.progress is not None
    status = poll_until_done(vtrix, created.task_id)
    assert (status.state, status.task_id) == ("succeeded", created.task_id)
    assert status.usage["total_tokens"] > 0
    [output] = status.outputs
    picture = Image.open(io.BytesIO(httpx.get(output.url or "").content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_wrong_key_is_a_permanent_provider_error(sandbox_url: str, input_image: InputImage) -> None:
    error = wrong_key_error(VtrixProvider, f"{sandbox_url}/vtrix", _request(input_image))
    assert (error.code, error.retryable, error.status_code) == ("provider_error", False, 401)


@pytest.mark.parametrize(
    ("change", "code", "provider_code"),
    [
        ({"provider_options": {"scale": 2}}, "invalid_request", "3014009"),
        ({"size": "4096x4096"}, "invalid_request", "3014007"),
        ({"provider_options": {"image": "bm90IGFuIGltYWdl"}}, "invalid_image", "3014005"),
    ],
    ids=["scale", "size", "not-an-image"],
)
def test_model_errors_are_permanent(
    vtrix: VtrixProvider,
    input_image: InputImage,
    change: dict[str, Any],
    code: str,
    provider_code: str,
) -> None:
    error = submit_error(vtrix, _request(input_image, **change))
    assert (error.code, error.provider_code, error.retryable) == (code, provider_code, False)


@pytest.mark.parametrize(
    ("params", "code", "provider_code", "retryable"),
    [
        ({}, "provider_unavailable", "3014095", True),
        ({"error_shape": "message"}, "provider_unavailable", "3014095", True),
        ({"error_shape": "numeric"}, "provider_unavailable", "3014095", True),
        ({"error_shape": "string"}, "provider_error", None, False),
    ],
    ids=["seed-spelling", "message", "numeric", "string"],
)
def test_failed_task_in_every_error_spelling(
    vtrix: VtrixProvider,
    input_image: InputImage,
    params: dict[str, Any],
    code: str,
    provider_code: str | None,
    retryable: bool,
) -> None:
    created = vtrix.submit(_request(input_image, provider_options=fault("task_fail", **params)))
    status = poll_until_done(vtrix, created.task_id or "")
    assert status.state == "failed" and status.error is not None
    assert status.error.message == "Internal generation error"
    assert (status.error.code, status.error.provider_code, status.error.retryable) == (
        code,
        provider_code,
        retryable,
    )


def test_moderated_task_is_content_rejected(vtrix: VtrixProvider, input_image: InputImage) -> None:
    created = vtrix.submit(_request(input_image, provider_options=fault("moderation")))
    status = poll_until_done(vtrix, created.task_id or "")
    assert status.error is not None
    assert (status.error.code, status.error.retryable) == ("content_rejected", False)


def test_rate_limit_and_server_errors_are_retryable(
    vtrix: VtrixProvider, input_image: InputImage, sandbox_url: str
) -> None:
    queue_fault(sandbox_url, "vtrix", "create", "rate_limit", retry_after=4)
    limited = submit_error(vtrix, _request(input_image))
    assert (limited.code, limited.retryable, limited.retry_after) == ("rate_limited", True, 4.0)
    assert limited.provider_code == "1002"
    queue_fault(sandbox_url, "vtrix", "create", "server_error", status=500)
    broken = submit_error(vtrix, _request(input_image))
    assert (broken.code, broken.retryable, broken.status_code) == (
        "provider_unavailable",
        True,
        500,
    )


def test_malformed_poll_is_retryable_and_unknown_task_is_not(
    vtrix: VtrixProvider, input_image: InputImage, sandbox_url: str
) -> None:
    task_id = vtrix.submit(_request(input_image)).task_id or ""
    queue_fault(sandbox_url, "vtrix", "poll", "malformed")
    malformed = poll_error(vtrix, task_id)
    assert (malformed.code, malformed.retryable) == ("provider_error", True)
    unknown = poll_error(vtrix, "no-such-task")
    assert (unknown.code, unknown.retryable, unknown.status_code) == (
        "provider_error",
        False,
        404,
    )


def test_hanging_poll_is_a_timeout(sandbox_url: str, input_image: InputImage) -> None:
    hanging_poll_error(VtrixProvider, sandbox_url, "vtrix", _request(input_image))


def _picture(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, fmt)
    return out.getvalue()


def _eleven_megabytes() -> bytes:
    # A valid PNG padded past 10 MB: the size rule alone must refuse it.
    return _picture((64, 64)) + b"\0" * (11 * 1024 * 1024)


@pytest.mark.parametrize(
    "data",
    [
        _picture((12, 200)),
        _picture((400, 100)),
        _picture((64, 64), "GIF"),
        b"this is not a PNG at all",
        None,
    ],
    ids=["12px-wide", "4:1", "gif", "not-an-image", "11MB"],
)
def test_refused_images_never_reach_a_vendor(
    stack: Stack, tenant: TenantClient, data: bytes | None
) -> None:
    data = data if data is not None else _eleven_megabytes()
    before = {vendor: c["total"] for vendor, c in stack.sandbox_stats().items()}
    for provider in (None, "vtrix", "cometapi", "acedata"):
        body: dict[str, Any] = {"model": "seededit-3.0", "prompt": "x"}
        if provider:
            body["provider"] = provider
        response = tenant.client.post("/v1/jobs", data=body, files={"image": ("x.png", data)})
        assert response.status_code == 422 and response.json()["code"] == "invalid_image"
    if len(data) < 1024 * 1024:
        as_json = tenant.client.post("/v1/jobs", json={**body, "image": data_url(data)})
        assert as_json.json()["code"] == "invalid_image"
    assert {vendor: c["total"] for vendor, c in stack.sandbox_stats().items()} == before
