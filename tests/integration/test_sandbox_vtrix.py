"""The Vtrix emulator over real HTTP: both body forms, task lifecycle, error spellings."""

from __future__ import annotations

import base64
import functools
import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.sandbox_server import (
    AUTH,
    emulator_fixtures,
    poll_until,
    running_sandbox,
    sample_image,
    upload_image,
)

MODEL = "spark_edit_3_0_i2i"
LATENCY = 0.2


base_url, image_url, client, receiver = emulator_fixtures({"latency": LATENCY})


def _wrapped(image: str, **params: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": [{"params": {"prompt": "make it pink", "image": image, **params}}],
    }


def _create(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post("/vtrix/model/v1/generation", json=body, **kwargs)


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"/vtrix/model/v1/generation/task/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _finished(client: httpx.Client, task_id: str) -> dict[str, Any]:
    read = functools.partial(_task, client, task_id)
    return poll_until(read, lambda body: body["status"] != "in_progress")


def test_wrapped_body_runs_in_progress_then_completed(client: httpx.Client, image_url: str) -> None:
    created = _create(client, _wrapped(image_url, scale=0.7, seed=4))
    assert created.status_code == 200, created.text
    task = created.json()
    assert (task["status"], task["model"]) == ("in_progress", MODEL)
    assert isinstance(task["created_at"], int)
    running = _task(client, task["id"])
    assert running["status"] == "in_progress" and 0 <= running["progress"] < 1

    done = _finished(client, task["id"])
    assert done["status"] == "completed"
    tokens = {"input_tokens", "output_tokens", "total_tokens"}
    assert set(done["usage"]) == tokens | {"cost", "quantity", "unit_price"}
    assert done["usage"]["quantity"] == 1
    assert done["usage"]["cost"] == done["usage"]["unit_price"] > 0
    assert done["metadata"] == {}
    [item] = done["output"][0]["content"]
    download = httpx.get(item["url"])
    assert item["type"] == "image" and item["size"] == len(download.content)
    picture = Image.open(io.BytesIO(download.content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_flat_body_with_base64_and_size(client: httpx.Client) -> None:
    raw = base64.b64encode(sample_image()).decode()
    body = {"model": MODEL, "prompt": "flat form", "image": raw, "size": "768x512"}
    done = _finished(client, _create(client, body).json()["id"])
    url = done["output"][0]["content"][0]["url"]
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (768, 512)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"model": ""}, "3014001"),
        ({"prompt": ""}, "3014002"),
        ({"image": ""}, "3014003"),
        ({"prompt": "x" * 801}, "3014004"),
        ({"image": base64.b64encode(b"not an image").decode()}, "3014005"),
        ({"image": base64.b64encode(sample_image((400, 100))).decode()}, "3014006"),
        ({"size": "4096x4096"}, "3014007"),
        ({"seed": "7"}, "3014008"),
        ({"scale": 1.5}, "3014009"),
        ({"response_format": "png"}, "3014010"),
    ],
    ids=["model", "prompt", "image", "long-prompt", "format", "ratio", "size", "seed", "scale",
         "response-format"],
)  # fmt: skip
def test_model_errors_are_400_in_the_seed_spelling(
    client: httpx.Client, image_url: str, change: dict[str, Any], code: str
) -> None:
    body = {"model": MODEL, "prompt": "p", "image": image_url, **change}
    response = _create(client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["error_message"]


def test_missing_key_and_unknown_task(base_url: str, client: httpx.Client, image_url: str) -> None:
    refused = httpx.post(f"{base_url}/vtrix/model/v1/generation", json=_wrapped(image_url))
    assert refused.status_code == 401
    assert refused.json()["error"]["message"]
    missing = client.get("/vtrix/model/v1/generation/task/nope")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"code": "3014095", "error_message": "Internal generation error"}),
        ({"error_shape": "message"}, {"code": "3014095", "message": "Internal generation error"}),
        ({"error_shape": "numeric"}, {"code": 3014095, "message": "Internal generation error"}),
        ({"error_shape": "string"}, "Internal generation error"),
    ],
    ids=["seed", "message", "numeric", "string"],
)
def test_failed_task_in_each_error_spelling(
    client: httpx.Client, image_url: str, params: dict[str, Any], expected: Any
) -> None:
    fault = {"_sandbox": {"fault": "task_fail", "params": params}}
    done = _finished(client, _create(client, _wrapped(image_url, **fault)).json()["id"])
    assert (done["status"], done["error"]) == ("failed", expected)
    assert "output" not in done


def test_transport_faults_speak_the_gateway_envelope(client: httpx.Client, image_url: str) -> None:
    limited = _create(
        client, _wrapped(image_url), headers={"X-Sandbox-Fault": "rate_limit;retry_after=3"}
    )
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json() == {"error": {"code": 1002, "message": "rate limited"}}
    broken = _create(
        client, _wrapped(image_url), headers={"X-Sandbox-Fault": "server_error;status=503"}
    )
    assert broken.status_code == 503 and broken.json()["error"]["code"] == 3014099


def test_queued_poll_fault_and_stats(client: httpx.Client, image_url: str) -> None:
    task_id = _create(client, _wrapped(image_url)).json()["id"]
    fault = {"vendor": "vtrix", "op": "poll", "kind": "malformed"}
    client.post("/_control/faults", json=fault).raise_for_status()
    with pytest.raises(ValueError):
        client.get(f"/vtrix/model/v1/generation/task/{task_id}").json()
    _finished(client, task_id)
    stats = client.get("/_control/stats").json()["vtrix"]
    assert stats["requests"]["create"] == 1 and stats["requests"]["poll"] >= 2
    assert stats["tasks_created"] == 1 and sum(stats["per_second"].values()) == stats["total"]


def test_result_links_expire() -> None:
    with (
        running_sandbox({"latency": 0, "url_ttl": 0.1}) as url,
        httpx.Client(base_url=url, headers=AUTH, timeout=10) as http,
    ):
        task_id = _create(http, _wrapped(upload_image(url, sample_image()))).json()["id"]
        link = _task(http, task_id)["output"][0]["content"][0]["url"]
        assert httpx.get(link).status_code == 200
        time.sleep(1.2)
        assert httpx.get(link).status_code == 403
