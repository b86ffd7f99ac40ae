"""ArkProvider against the Ark emulator: what only Ark does (the rest: test_vendor_contract.py)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.ark import ArkProvider
from editqueue.providers.base import InputImage
from tests.integration.sandbox_server import sample_image
from tests.integration.vendor_contract import (
    adapter_fixture,
    edit_request,
    submit_error,
    unused_input,
    vendor_fixtures,
)

sandbox_url, _ = vendor_fixtures()
ark = adapter_fixture(ArkProvider, "ark")


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
    ],
    ids=["guidance", "narrow-image", "gif", "unknown-model"],
)
def test_permanent_failures(
    ark: ArkProvider, change: dict[str, Any], code: str, provider_code: str
) -> None:
    error = submit_error(ark, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable) == (code, provider_code, False)
    assert error.provider == "ark"
