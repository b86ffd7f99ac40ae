"""CometApiProvider against the CometAPI emulator: what only CometAPI does.

What every vendor does is in test_vendor_contract.py.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from editqueue.providers.cometapi import CometApiProvider
from tests.integration.vendor_contract import (
    adapter_fixture,
    edit_request,
    fault,
    submit_error,
    unused_input,
    vendor_fixtures,
)

sandbox_url, _ = vendor_fixtures()
comet = adapter_fixture(CometApiProvider, "cometapi")


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
            {"provider_options": fault("task_fail", code="invalid_request")},
            "invalid_request",
            "invalid_request",
        ),
    ],
    ids=["guidance", "no-model", "narrow-image", "gif", "500-invalid-request"],
)
def test_permanent_failures(
    comet: CometApiProvider, change: dict[str, Any], code: str, provider_code: str | None
) -> None:
    error = submit_error(comet, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable) == (code, provider_code, False)
    assert error.provider == "cometapi"
