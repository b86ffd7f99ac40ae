"""The CometAPI emulator over real HTTP: multipart edits, its envelope, checks and faults."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.sandbox_server import emulator_fixtures, sample_image

SEEDEDIT = "bytedance-seedEdit-3.0-i2i"


base_url, image_url, client, receiver = emulator_fixtures()


def _edit(
    client: httpx.Client,
    images: list[bytes] | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    form = {"model": SEEDEDIT, "prompt": "put on glasses", **fields}
    parts = [("image", ("in.png", data, "image/png")) for data in images or [sample_image()]]
    return client.post("/cometapi/v1/images/edits", data=form, files=parts, headers=headers)


def _error(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert error["type"] == "comet_api_error"
    assert "(request id: " in error["message"]
    return error


def test_seededit_answer_and_download(client: httpx.Client) -> None:
    response = _edit(client, seed="9", guidance_scale="7.5", watermark="false")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "created", "data", "usage"}
    assert body["model"] == SEEDEDIT and body["usage"]["generated_images"] == 1
    picture = Image.open(io.BytesIO(httpx.get(body["data"][0]["url"]).content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_seedream_with_two_references_and_b64(client: httpx.Client) -> None:
    response = _edit(
        client,
        images=[sample_image(), sample_image(colour=(200, 30, 30))],
        model="seedream-4-0-250828",
        size="1360x768",
        n="2",
        response_format="b64_json",
    )
    items = response.json()["data"]
    sizes = {Image.open(io.BytesIO(base64.b64decode(i["b64_json"]))).size for i in items}
    assert len(items) == 2 and sizes == {(1360, 768)}


def test_missing_key_is_401(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/cometapi/v1/images/edits",
        data={"model": SEEDEDIT, "prompt": "p"},
        files={"image": ("in.png", sample_image(), "image/png")},
    )
    assert response.status_code == 401
    assert _error(response)["code"] == ""


@pytest.mark.parametrize(
    ("fields", "images", "code", "wording"),
    [
        ({"model": ""}, None, "", "model name is required"),
        ({"prompt": ""}, None, "", "prompt is required"),
        ({"seed": "-2"}, None, "InvalidParameter", "`seed`"),
        ({"guidance_scale": "11"}, None, "InvalidParameter", "`guidance_scale`"),
        ({"size": "1024x1024"}, None, "InvalidParameter", "`size`"),
        ({"watermark": "maybe"}, None, "InvalidParameter", "`watermark`"),
        ({}, [sample_image((14, 200))], "InvalidParameter", "`image`"),
        ({}, [sample_image((400, 100))], "InvalidParameter", "`image`"),
        ({}, [sample_image((64, 64), "GIF")], "InvalidParameter.UnsupportedImageFormat", "image"),
        ({}, [sample_image(), sample_image()], "InvalidParameter", "`image`"),
    ],
    ids=["model", "prompt", "seed", "guidance", "size", "watermark", "narrow", "ratio", "gif",
         "two-images"],
)  # fmt: skip
def test_validation_is_400(
    client: httpx.Client,
    fields: dict[str, str],
    images: list[bytes] | None,
    code: str,
    wording: str,
) -> None:
    response = _edit(client, images, **fields)
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == code and wording in error["message"]


def test_json_body_is_refused(client: httpx.Client) -> None:
    response = client.post("/cometapi/v1/images/edits", json={"model": SEEDEDIT})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("rate_limit;retry_after=4", 429, ""),
        ("server_error;status=503", 503, ""),
        ("task_fail;code=invalid_request", 500, "invalid_request"),
        ("moderation", 400, "SensitiveContentDetected"),
        ("task_fail", 500, ""),
    ],
)
def test_faults_speak_cometapis_envelope(
    client: httpx.Client, fault: str, status: int, code: str
) -> None:
    response = _edit(client, headers={"X-Sandbox-Fault": fault})
    assert response.status_code == status
    assert _error(response)["code"] == code
    if status == 429:
        assert response.headers["Retry-After"] == "4"


def test_fault_from_the_form_field_and_stats(client: httpx.Client) -> None:
    malformed = _edit(client, _sandbox=json.dumps({"fault": "malformed"}))
    with pytest.raises(ValueError):
        malformed.json()
    assert _edit(client, _sandbox="{not json").status_code == 400
    stats = client.get("/_control/stats").json()["cometapi"]
    assert stats["requests"] == {"create": 2} and sum(stats["per_second"].values()) == 2
