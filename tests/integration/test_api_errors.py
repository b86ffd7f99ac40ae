"""Bad input gets a clear problem+json 4xx, never a 500, and no job is created."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.conftest import TenantClient, data_url, png_bytes

VALID = {"model": "seededit-3.0", "prompt": "snow"}


def valid(**extra: Any) -> dict[str, Any]:
    return {**VALID, "image": data_url(png_bytes()), **extra}


def assert_problem(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def test_malformed_json_is_400(tenant: TenantClient) -> None:
    response = tenant.client.post(
        "/v1/jobs",
        content=b'{"model": "seededit-3.0", ',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_invalid_utf8_is_400(tenant: TenantClient) -> None:
    response = tenant.client.post(
        "/v1/jobs", content=b'{"model": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")


def test_non_object_body_is_422(tenant: TenantClient) -> None:
    assert_problem(tenant.client.post("/v1/jobs", json=[1, 2]), 422, "invalid_request")


def test_wrong_content_type_is_415(tenant: TenantClient) -> None:
    response = tenant.client.post(
        "/v1/jobs", content=b"model=x", headers={"content-type": "text/plain"}
    )
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"seed": "7"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"n": True}, "n"),
        ({"guidance_scale": "high"}, "guidance_scale"),
        ({"guidance_scale": True}, "guidance_scale"),
        ({"guidance_scale": 11}, "guidance_scale"),
        ({"watermark": "yes"}, "watermark"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"webhook_events": ["job.exploded"]}, "webhook_events[0]"),
        ({"deadline_seconds": 1}, "deadline_seconds"),
        ({"provider": "acme"}, "provider"),
        ({"surprise": 1}, "surprise"),
        ({"images": "not-a-list"}, "images"),
    ],
)
def test_wrong_types_and_ranges_are_422_with_the_field(
    tenant: TenantClient, patch: dict, field: str
) -> None:
    assert_problem(
        tenant.client.post("/v1/jobs", json=valid(**patch)), 422, "invalid_request", field
    )


def test_missing_required_fields_are_422(tenant: TenantClient) -> None:
    body = assert_problem(tenant.client.post("/v1/jobs", json={}), 422, "invalid_request")
    assert {"model", "prompt"} <= {e["field"] for e in body["errors"]}


def test_oversized_prompt_is_422(tenant: TenantClient) -> None:
    body = assert_problem(
        tenant.client.post("/v1/jobs", json=valid(prompt="x" * 801)),
        422,
        "invalid_request",
        "prompt",
    )
    assert "800" in body["detail"]
    huge = assert_problem(
        tenant.client.post("/v1/jobs", json=valid(prompt="x" * 100_000)), 422, "invalid_request"
    )
    assert huge["errors"][0]["field"] == "prompt"


def test_unknown_model_is_422(tenant: TenantClient) -> None:
    body = assert_problem(
        tenant.client.post("/v1/jobs", json=valid(model="dall-e-9")),
        422,
        "invalid_request",
        "model",
    )
    assert "GET /v1/models" in body["detail"]


def test_model_specific_parameters_are_checked(tenant: TenantClient) -> None:
    client = tenant.client
    assert_problem(
        client.post("/v1/jobs", json=valid(size="1024x1024")), 422, "invalid_request", "size"
    )
    assert_problem(
        client.post("/v1/jobs", json=valid(aspect_ratio="4:3")),
        422,
        "invalid_request",
        "aspect_ratio",
    )
    assert_problem(client.post("/v1/jobs", json=valid(n=2)), 422, "invalid_request", "n")
    two = {**VALID, "images": [data_url(png_bytes()), data_url(png_bytes())]}
    assert_problem(client.post("/v1/jobs", json=two), 422, "invalid_request", "images")
    assert_problem(client.post("/v1/jobs", json=VALID), 422, "invalid_request", "images")
    assert_problem(
        client.post("/v1/jobs", json=valid(provider="kie")), 422, "invalid_request", "provider"
    )


def _image(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (_image((12, 200)), "png"),
        (_image((400, 100)), "png"),
        (_image((64, 64), "GIF"), "gif"),
        (b"this is not an image at all", "png"),
        (_image((64, 64))[:60], "png"),
    ],
    ids=["12px-wide", "4:1", "gif", "not-an-image", "truncated"],
)
def test_bad_images_are_refused_with_invalid_image(
    tenant: TenantClient, data: bytes, fmt: str
) -> None:
    response = tenant.client.post("/v1/jobs", json={**VALID, "image": data_url(data, fmt)})
    assert_problem(response, 422, "invalid_image", "image")
    multipart = tenant.client.post(
        "/v1/jobs", data=VALID, files={"image": ("x.png", data, "image/png")}
    )
    assert_problem(multipart, 422, "invalid_image", "image[0]")


def test_bad_data_url_is_invalid_image(tenant: TenantClient) -> None:
    response = tenant.client.post("/v1/jobs", json={**VALID, "image": "data:image/png;base64,@@@"})
    assert_problem(response, 422, "invalid_image", "image")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "http://127.0.0.1:1/a.png",
        "https://10.0.0.1/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a.png",
        "not a url",
    ],
)
def test_unsafe_or_unsupported_image_urls_are_422(tenant: TenantClient, url: str) -> None:
    # 127.0.0.1 is allowed in the test stack's config; port 1 URLs are refused only when not.
    response = tenant.client.post("/v1/jobs", json={**VALID, "image": url})
    if url.startswith("http://127.0.0.1") or url.startswith("https://[::1]"):
        assert response.status_code == 202
        return
    assert_problem(response, 422, "invalid_request", "image")


def test_private_webhook_urls_are_422(tenant: TenantClient) -> None:
    for url in ("https://10.0.0.1/hook", "https://169.254.169.254/", "ftp://example.com/"):
        response = tenant.client.post("/v1/jobs", json=valid(webhook_url=url))
        assert_problem(response, 422, "invalid_request", "webhook_url")


def test_oversized_body_is_413(stack, tenant: TenantClient) -> None:
    big = b"{" + b" " * (65 * 1024 * 1024) + b"}"
    response = tenant.client.post(
        "/v1/jobs", content=big, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_bad_query_values_are_422(tenant: TenantClient) -> None:
    client = tenant.client
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "²"}, "limit"),  # a digit to str.isdigit, not to int()
        ({"limit": " 5"}, "limit"),
        ({"status": "done"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
    ):
        assert_problem(client.get("/v1/jobs", params=params), 422, "invalid_request", field)
    # The delivery log and the endpoint list read `limit` the same way.
    response = client.get("/v1/webhook-endpoints", params={"limit": "²"})
    assert_problem(response, 422, "invalid_request", "limit")


def test_idempotency_key_too_long_is_422(tenant: TenantClient) -> None:
    response = tenant.client.post("/v1/jobs", json=valid(), headers={"Idempotency-Key": "k" * 256})
    assert_problem(response, 422, "invalid_request", "Idempotency-Key")


def test_unknown_route_and_method(tenant: TenantClient) -> None:
    assert_problem(tenant.client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(tenant.client.delete("/v1/jobs"), 405, "method_not_allowed")


def test_no_job_was_created_by_any_bad_request(tenant: TenantClient) -> None:
    tenant.client.post("/v1/jobs", json=valid(prompt="x" * 801))
    tenant.client.post("/v1/jobs", json={**VALID, "image": data_url(b"nope")})
    assert tenant.client.get("/v1/jobs").json()["data"] == []


def test_deeply_nested_json_is_400(tenant: TenantClient) -> None:
    deep = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = tenant.client.post(
        "/v1/jobs", content=deep, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")
    nested = {"metadata": {"k": "v"}, "provider_options": {}}
    for _ in range(200):
        nested = {"provider_options": nested}
    response = tenant.client.post("/v1/jobs", json=valid(provider_options=nested))
    assert response.status_code in (202, 422)


def test_decompression_bomb_is_refused(tenant: TenantClient) -> None:
    # 20000 x 20000 of one colour: a few hundred KB as PNG, 1.2 GB once decoded.
    buffer = io.BytesIO()
    Image.new("L", (20_000, 20_000), 0).save(buffer, "PNG", optimize=True)
    body = assert_problem(
        tenant.client.post("/v1/jobs", json={**VALID, "image": data_url(buffer.getvalue())}),
        422,
        "invalid_image",
        "image",
    )
    assert "pixels" in body["detail"] or "large" in body["detail"]
