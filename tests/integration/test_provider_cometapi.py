"""CometApiProvider against the CometAPI emulator over loopback: the adapter's contract."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.cometapi import CometApiProvider
from tests.integration.sandbox_server import running_sandbox
from tests.integration.vendor_contract import (
    API_KEY,
    edit_request,
    fault,
    fresh_adapter,
    hanging_submit_error,
    queued_rate_limit_error,
    submit_error,
    unused_input,
    wrong_key_error,
)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox({"api_keys": API_KEY}) as url:
        yield url


@pytest.fixture
def comet(sandbox_url: str) -> Iterator[CometApiProvider]:
    with fresh_adapter(CometApiProvider, sandbox_url, "cometapi") as provider:
        yield provider


def test_seededit_returns_a_downloadable_jpeg(comet: CometApiProvider) -> None:
    status = comet.submit(edit_request(guidance_scale=7.0, watermark=True))
    assert status.state == "succeeded" and status.usage["generated_images"] == 1
    [output] = status.outputs
    picture = Image.open(io.BytesIO(httpx.get(output.url or "").content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_seedream_references_outputs_and_inline_answer(comet: CometApiProvider) -> None:
    request = edit_request(
        "seedream-4.0-edit",
        images=[unused_input(), unused_input((480, 640))],
        aspect_ratio="16:9",
        resolution="1K",
        n=2,
        provider_options={"response_format": "b64_json"},
    )
    status = comet.submit(request)
    assert len(status.outputs) == 2
    for output in status.outputs:
        assert output.url is None and output.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(output.data or b"")).size == (1360, 768)


def test_wrong_key_is_a_permanent_provider_error(sandbox_url: str) -> None:
    error = wrong_key_error(CometApiProvider, f"{sandbox_url}/cometapi", edit_request())
    assert (error.code, error.retryable, error.status_code) == ("provider_error", False, 401)


@pytest.mark.parametrize(
    ("change", "code", "provider_code"),
    [
        ({"guidance_scale": 11.0}, "invalid_request", "InvalidParameter"),
        ({"provider_options": {"model": ""}}, "invalid_request", None),
        ({"images": [unused_input((14, 200))]}, "invalid_image", "InvalidParameter"),
        (
            {"images": [unused_input((64, 64), "GIF")]},
            "invalid_image",
            "InvalidParameter.UnsupportedImageFormat",
        ),
        (
            {"provider_options": fault("moderation")},
            "content_rejected",
            "SensitiveContentDetected",
        ),
        (
            {"provider_options": fault("task_fail", code="invalid_request")},
            "invalid_request",
            "invalid_request",
        ),
    ],
    ids=["guidance", "no-model", "narrow-image", "gif", "moderation", "500-invalid-request"],
)
def test_permanent_failures(
    comet: CometApiProvider, change: dict[str, Any], code: str, provider_code: str | None
) -> None:
    error = submit_error(comet, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable) == (code, provider_code, False)
    assert error.provider == "cometapi"


@pytest.mark.parametrize(
    ("fault_options", "code", "status"),
    [
        (fault("server_error", status=502), "provider_unavailable", 502),
        (fault("server_error", status=504), "timeout", 504),
        (fault("task_fail"), "provider_unavailable", 500),
        (fault("malformed"), "provider_error", 200),
    ],
    ids=["502", "504", "task-fail", "malformed"],
)
def test_transient_failures(
    comet: CometApiProvider, fault_options: dict[str, Any], code: str, status: int
) -> None:
    error = submit_error(comet, edit_request(provider_options=fault_options))
    assert (error.code, error.retryable, error.status_code) == (code, True, status)


def test_rate_limit_from_the_control_queue(comet: CometApiProvider, sandbox_url: str) -> None:
    queued_rate_limit_error(comet, sandbox_url, "cometapi", edit_request())


def test_hang_is_a_timeout(sandbox_url: str) -> None:
    request = edit_request(provider_options=fault("hang", seconds=1.5))
    hanging_submit_error(CometApiProvider, f"{sandbox_url}/cometapi", request)
