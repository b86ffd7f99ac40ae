"""VtrixProvider against the Vtrix emulator: what only Vtrix does (its error spellings).

What every vendor does is in test_vendor_contract.py. Also: images the API refuses
never reach any vendor (the sandbox's counters stay still).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from editqueue.providers.base import EditRequest, InputImage
from editqueue.providers.vtrix import VtrixProvider
from tests.conftest import TenantClient, data_url
from tests.integration.vendor_contract import (
    VTRIX_FIELDS,
    adapter_fixture,
    edit_request,
    fault,
    poll_until_done,
    submit_error,
    vendor_fixtures,
)
from tests.stack import Stack

sandbox_url, input_image = vendor_fixtures({"latency": 0.3})
vtrix = adapter_fixture(VtrixProvider, "vtrix")


def _request(image: InputImage, **fields: Any) -> EditRequest:
    return edit_request(**{"images": [image], **VTRIX_FIELDS, **fields})


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
        ({"error_shape": "message"}, "provider_unavailable", "3014095", True),
        ({"error_shape": "numeric"}, "provider_unavailable", "3014095", True),
        ({"error_shape": "string"}, "provider_error", None, False),
    ],
    ids=["message", "numeric", "string"],
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
