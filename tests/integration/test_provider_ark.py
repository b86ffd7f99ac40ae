"""ArkProvider against the Ark emulator over loopback: the adapter's contract end to end."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.ark import ArkProvider
from editqueue.providers.base import InputImage
from tests.integration.sandbox_server import running_sandbox, sample_image
from tests.integration.vendor_contract import (
    API_KEY,
    adapter,
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
def ark(sandbox_url: str) -> Iterator[ArkProvider]:
    with fresh_adapter(ArkProvider, sandbox_url, "ark") as provider:
        yield provider


def test_seededit_returns_a_downloadable_jpeg(ark: ArkProvider) -> None:
    status = ark.submit(edit_request())
    assert status.state == "succeeded"
    assert status.usage["generated_images"] == 1
    [output] = status.outputs
    assert output.url is not None
    picture = Image.open(io.BytesIO(httpx.get(output.url).content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_b64_json_comes_back_as_bytes(ark: ArkProvider) -> None:
    status = ark.submit(edit_request(provider_options={"response_format": "b64_json"}))
    [output] = status.outputs
    assert output.url is None
    assert output.content_type == "image/jpeg"
    assert output.data is not None and output.data != unused_input().data


def test_seedream_with_two_images_and_two_outputs(ark: ArkProvider) -> None:
    images = [unused_input(), unused_input(colour=(200, 30, 30))]
    request = edit_request(
        "seedream-4.0-edit", images=images, aspect_ratio="16:9", resolution="1K", n=2
    )
    status = ark.submit(request)
    assert len(status.outputs) == 2
    sizes = {Image.open(io.BytesIO(httpx.get(o.url or "").content)).size for o in status.outputs}
    assert sizes == {(1360, 768)}


def test_wrong_key_is_a_permanent_provider_error(sandbox_url: str) -> None:
    error = wrong_key_error(ArkProvider, f"{sandbox_url}/ark", edit_request())
    assert (error.code, error.provider_code, error.retryable) == (
        "provider_error",
        "AuthenticationError",
        False,
    )
    assert error.status_code == 401


@pytest.mark.parametrize(
    ("change", "code", "provider_code"),
    [
        ({"guidance_scale": 11.0}, "invalid_request", "InvalidParameter"),
        ({"images": [unused_input((14, 200))]}, "invalid_image", "InvalidParameter"),
        (
            {"images": [InputImage(sample_image((64, 64), "GIF"), "image/gif", "u", 64, 64)]},
            "invalid_image",
            "InvalidParameter.UnsupportedImageFormat",
        ),
        (
            {"provider_options": {"model": "ep-closed"}},
            "provider_error",
            "InvalidEndpointOrModel.NotFound",
        ),
        (
            {"provider_options": fault("moderation")},
            "content_rejected",
            "SensitiveContentDetected",
        ),
    ],
    ids=["guidance", "narrow-image", "gif", "unknown-model", "moderation"],
)
def test_permanent_failures(
    ark: ArkProvider, change: dict[str, Any], code: str, provider_code: str
) -> None:
    error = submit_error(ark, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable) == (code, provider_code, False)
    assert error.provider == "ark"


@pytest.mark.parametrize(
    ("fault_options", "code", "status"),
    [
        (fault("server_error", status=502), "provider_unavailable", 502),
        (fault("server_error", status=503), "provider_unavailable", 503),
        (fault("task_fail"), "provider_unavailable", 500),
        (fault("malformed"), "provider_error", 200),
    ],
    ids=["502", "503", "task-fail", "malformed"],
)
def test_transient_failures(
    ark: ArkProvider, fault_options: dict[str, Any], code: str, status: int
) -> None:
    error = submit_error(ark, edit_request(provider_options=fault_options))
    assert (error.code, error.retryable, error.status_code) == (code, True, status)


def test_rate_limit_from_the_control_queue(ark: ArkProvider, sandbox_url: str) -> None:
    error = queued_rate_limit_error(ark, sandbox_url, "ark", edit_request())
    assert error.provider_code == "RateLimitExceeded.EndpointRPMExceeded"


def test_hang_is_a_timeout(sandbox_url: str) -> None:
    request = edit_request(provider_options=fault("hang", seconds=1.5))
    hanging_submit_error(ArkProvider, f"{sandbox_url}/ark", request)


def test_unreachable_vendor_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with adapter(ArkProvider, f"http://127.0.0.1:{port}/ark", timeout=2) as provider:
        error = submit_error(provider, edit_request())
    assert (error.code, error.retryable) == ("provider_unavailable", True)
