"""The Ark emulator over real HTTP: its answers, checks, faults, links and counters."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import data_url
from tests.integration.sandbox_server import (
    AUTH,
    emulator_fixtures,
    running_sandbox,
    sample_image,
    upload_image,
)

MODEL = "doubao-seededit-3-0-i2i-250628"


base_url, image_url, client, receiver = emulator_fixtures()


def _body(**fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "prompt": "add a rainbow", "image": data_url(sample_image())}
    body.update(fields)
    return body


def _generate(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post("/ark/api/v3/images/generations", json=body, **kwargs)


def _error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_url_answer_and_download(client: httpx.Client) -> None:
    response = _generate(client, _body(seed=21))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == MODEL
    assert body["usage"]["generated_images"] == 1
    download = httpx.get(body["data"][0]["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(download.content))
    # 640×480 is ratio 1.33: the adaptive table answers 1152×864.
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_b64_answer_is_deterministic_and_differs_from_the_input(client: httpx.Client) -> None:
    source = sample_image()
    body = _body(image=data_url(source), response_format="b64_json", seed=5)
    first = base64.b64decode(_generate(client, body).json()["data"][0]["b64_json"])
    second = base64.b64decode(_generate(client, body).json()["data"][0]["b64_json"])
    other = base64.b64decode(
        _generate(client, {**body, "prompt": "remove the rainbow"}).json()["data"][0]["b64_json"]
    )
    assert first == second
    assert first != other
    assert first != source


def test_reseller_path_and_image_url(client: httpx.Client, base_url: str) -> None:
    image_url = upload_image(base_url, sample_image(image_format="JPEG"), "image/jpeg")
    response = client.post("/ark/v1/images/generations", json=_body(image=image_url))
    assert response.status_code == 200, response.text


def test_seedream_model_with_several_outputs(client: httpx.Client) -> None:
    body = _body(
        model="doubao-seedream-4-0-250828",
        image=[data_url(sample_image()), data_url(sample_image(colour=(200, 20, 20)))],
        size="1280x720",
        sequential_image_generation="auto",
        sequential_image_generation_options={"max_images": 2},
    )
    response = _generate(client, body)
    assert response.status_code == 200, response.text
    assert [item["size"] for item in response.json()["data"]] == ["1280x720", "1280x720"]


# A bare "Bearer" is the blank key: httpx will not send a header with trailing spaces.
@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwdw=="])
def test_missing_key_is_401_in_arks_envelope(base_url: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    endpoint = f"{base_url}/ark/api/v3/images/generations"
    response = httpx.post(endpoint, json=_body(), headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("AuthenticationError", "Unauthorized")


def test_api_key_list_is_enforced_when_set() -> None:
    with running_sandbox({"api_keys": "good-key"}) as url:
        endpoint = f"{url}/ark/api/v3/images/generations"
        bad = httpx.post(endpoint, json=_body(), headers={"Authorization": "Bearer other"})
        good = httpx.post(endpoint, json=_body(), headers={"Authorization": "Bearer good-key"})
    assert (bad.status_code, good.status_code) == (401, 200)


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [
        ({"model": None}, 400, "MissingParameter", "model"),
        ({"model": "doubao-seedream-3-0-t2i"}, 404, "InvalidEndpointOrModel.NotFound", ""),
        ({"prompt": ""}, 400, "MissingParameter", "prompt"),
        ({"image": None}, 400, "MissingParameter", "image"),
        ({"image": "data:image/png;base64,@@@"}, 400, "InvalidParameter", "image"),
        ({"image": "ftp://example.com/a.png"}, 400, "InvalidParameter", "image"),
        ({"seed": 2**31}, 400, "InvalidParameter", "seed"),
        ({"seed": -2}, 400, "InvalidParameter", "seed"),
        ({"guidance_scale": 10.5}, 400, "InvalidParameter", "guidance_scale"),
        ({"guidance_scale": 0.5}, 400, "InvalidParameter", "guidance_scale"),
        ({"size": "1024x1024"}, 400, "InvalidParameter", "size"),
        ({"response_format": "png"}, 400, "InvalidParameter", "response_format"),
        ({"watermark": "yes"}, 400, "InvalidParameter", "watermark"),
    ],
)
def test_request_checks(
    client: httpx.Client, fields: dict[str, Any], status: int, code: str, param: str
) -> None:
    body = {k: v for k, v in _body(**fields).items() if v is not None}
    response = _generate(client, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert "Request id" in error["message"]


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (sample_image((14, 200)), "InvalidParameter"),
        (sample_image((900, 300)), "InvalidParameter"),  # ratio exactly 3 is outside (1/3, 3)
        (sample_image((64, 64), "GIF"), "InvalidParameter.UnsupportedImageFormat"),
        (sample_image((64, 64), "WEBP"), "InvalidParameter.UnsupportedImageFormat"),
        (b"\x89PNG" + b"\x00" * (10 * 1024 * 1024), "InvalidParameter.OversizedImage"),
    ],
    ids=["narrow", "ratio-3", "gif", "webp", "oversized"],
)
def test_image_checks(client: httpx.Client, image: bytes, code: str) -> None:
    response = _generate(client, _body(image=data_url(image)))
    assert response.status_code == 400
    assert _error_code(response) == code


def test_rate_limit_fault_from_header(client: httpx.Client) -> None:
    response = _generate(client, _body(), headers={"X-Sandbox-Fault": "rate_limit;retry_after=7"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["type"] == "TooManyRequests"


def test_faults_from_the_body(client: httpx.Client) -> None:
    moderation = _generate(client, _body(_sandbox={"fault": "moderation"}))
    failed = _generate(client, _body(_sandbox={"fault": "task_fail"}))
    overloaded = _generate(client, _body(_sandbox={"fault": "server_error", "status": 503}))
    assert (moderation.status_code, _error_code(moderation)) == (400, "SensitiveContentDetected")
    assert (failed.status_code, _error_code(failed)) == (500, "InternalServiceError")
    assert overloaded.status_code == 503


def test_malformed_fault(client: httpx.Client) -> None:
    response = _generate(client, _body(), headers={"X-Sandbox-Fault": "malformed"})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_latency_fault(client: httpx.Client) -> None:
    started = time.monotonic()
    response = _generate(client, _body(), headers={"X-Sandbox-Fault": "latency;seconds=0.4"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_unknown_fault_is_refused(client: httpx.Client) -> None:
    response = _generate(client, _body(), headers={"X-Sandbox-Fault": "gremlins"})
    assert response.status_code == 400


def test_queued_faults_are_consumed_in_order(client: httpx.Client) -> None:
    queued = client.post(
        "/_control/faults",
        json={"vendor": "ark", "op": "create", "kind": "server_error", "count": 2},
    )
    assert queued.status_code == 201
    client.post("/_control/faults", json={"vendor": "kie", "kind": "rate_limit"})
    statuses = [_generate(client, _body()).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [f["vendor"] for f in client.get("/_control/faults").json()["queued"]] == ["kie"]
    assert client.delete("/_control/faults").status_code == 204
    assert client.get("/_control/faults").json()["queued"] == []


@pytest.mark.parametrize(
    "spec",
    [{"kind": "gremlins"}, {"kind": "latency", "op": "delete"}, {"kind": "hang", "vendor": "x"}],
)
def test_control_refuses_bad_fault_specs(client: httpx.Client, spec: dict[str, Any]) -> None:
    assert client.post("/_control/faults", json=spec).status_code == 400


def test_result_links_expire() -> None:
    with running_sandbox({"url_ttl": 1}) as url:
        response = httpx.post(f"{url}/ark/api/v3/images/generations", json=_body(), headers=AUTH)
        link = response.json()["data"][0]["url"]
        assert httpx.get(link).status_code == 200
        tampered = httpx.get(link.replace("sig=", "sig=0"))
        expires = int(httpx.URL(link).params["expires"])
        time.sleep(max(0.0, expires - time.time()) + 0.05)
        expired = httpx.get(link)
    for refused in (tampered, expired):
        assert refused.status_code == 403
        assert b"<Code>AccessDenied</Code>" in refused.content


def test_stats_count_requests_and_reset(client: httpx.Client, base_url: str) -> None:
    _generate(client, _body())
    _generate(client, _body(prompt=""))
    httpx.post(f"{base_url}/ark/api/v3/images/generations", json=_body())  # no key
    stats = client.get("/_control/stats").json()
    assert stats["ark"]["requests"] == {"create": 3}
    assert sum(stats["ark"]["per_second"].values()) == 3
    assert stats["kie"]["total"] == 0
    client.post("/_control/reset")
    assert client.get("/_control/stats").json()["ark"]["total"] == 0
