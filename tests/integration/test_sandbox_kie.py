"""The KIE emulator over real HTTP: task lifecycle, envelopes, callbacks and faults."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.sandbox_server import (
    AUTH,
    CallbackReceiver,
    emulator_fixtures,
    poll_until,
    running_sandbox,
    sample_image,
    upload_image,
)

MODEL = "bytedance/seedream-v4-edit"
WEBHOOK_KEY = "kie-hmac-key"
LATENCY = 0.3


base_url, image_url, client, receiver = emulator_fixtures(
    {"latency": LATENCY, "kie_webhook_key": WEBHOOK_KEY}
)


def _body(image_url: str, callback_url: str | None = None, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "input": {"prompt": "paint it gold", "image_urls": [image_url], **params},
    }
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def _create(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post("/kie/api/v1/jobs/createTask", json=body, **kwargs)


def _task_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.json()["code"] == 200, response.text
    return response.json()["data"]["taskId"]


def _record(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get("/kie/api/v1/jobs/recordInfo", params={"taskId": task_id})
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["message"]) == (200, "success")
    return body["data"]


def _wait_until_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    read = functools.partial(_record, client, task_id)
    return poll_until(read, lambda record: record["state"] in ("success", "fail"))


def _signature(task_id: str, timestamp: str) -> str:
    digest = hmac.new(WEBHOOK_KEY.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def test_task_lifecycle_and_results() -> None:
    # A slower sandbox of its own, so that every state lasts long enough to be seen.
    with (
        running_sandbox({"latency": 1.0}) as url,
        httpx.Client(base_url=url, headers=AUTH) as client,
    ):
        body = _body(upload_image(url, sample_image()), image_size="landscape_16_9", max_images=2)
        task_id = _task_id(_create(client, body))
        seen = []
        while not seen or seen[-1] not in ("success", "fail"):
            record = _record(client, task_id)
            if not seen or seen[-1] != record["state"]:
                seen.append(record["state"])
            time.sleep(0.01)
        assert seen == ["waiting", "queuing", "generating", "success"]

        assert json.loads(record["param"]) == body
        assert record["completeTime"] >= record["createTime"]
        urls = json.loads(record["resultJson"])["resultUrls"]
        assert len(urls) == 2
        assert urls == json.loads(_record(client, task_id)["resultJson"])["resultUrls"]
        pictures = [Image.open(io.BytesIO(httpx.get(url).content)) for url in urls]
        assert [(p.format, p.size) for p in pictures] == [("PNG", (1024, 576))] * 2


def test_running_task_has_empty_result_fields(client: httpx.Client, image_url: str) -> None:
    record = _record(client, _task_id(_create(client, _body(image_url))))
    assert record["state"] in ("waiting", "queuing", "generating")
    assert (record["resultJson"], record["failCode"], record["failMsg"]) == ("", "", "")
    assert "completeTime" not in record


def test_4k_output_is_rendered_at_the_cap(client: httpx.Client, image_url: str) -> None:
    body = _body(image_url, image_size="landscape_4_3", image_resolution="4K")
    record = _wait_until_done(client, _task_id(_create(client, body)))
    url = json.loads(record["resultJson"])["resultUrls"][0]
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (2048, 1536)


def test_missing_key_is_http_401(base_url: str, image_url: str) -> None:
    response = httpx.post(f"{base_url}/kie/api/v1/jobs/createTask", json=_body(image_url))
    assert response.status_code == 401
    assert response.json() == {"code": 401, "msg": "You do not have access permissions"}


@pytest.mark.parametrize(
    "change",
    [
        {"model": "bytedance/seedream-v4-text-to-image"},
        {"input": None},
        {"callBackUrl": "not-a-url"},
        {"input.prompt": ""},
        {"input.prompt": "x" * 5001},
        {"input.image_urls": []},
        {"input.image_urls": ["https://x.test/a.png"] * 11},
        {"input.image_urls": ["file:///etc/passwd"]},
        {"input.image_size": "square_xl"},
        {"input.image_resolution": "8K"},
        {"input.max_images": 7},
        {"input.max_images": 0},
        {"input.seed": "42"},
    ],
    ids=str,
)
def test_validation_is_code_422_with_http_200(
    client: httpx.Client, image_url: str, change: dict[str, Any]
) -> None:
    body = _body(image_url)
    for key, value in change.items():
        if key.startswith("input."):
            body["input"][key.removeprefix("input.")] = value
        else:
            body[key] = value
    response = _create(client, body)
    assert response.status_code == 200
    assert response.json()["code"] == 422
    assert response.json()["msg"]


@pytest.mark.parametrize(
    ("image", "content_type"),
    [(sample_image((64, 64), "GIF"), "image/png"), (b"not an image", "image/png")],
    ids=["gif", "garbage"],
)
def test_input_images_are_checked(
    client: httpx.Client, base_url: str, image: bytes, content_type: str
) -> None:
    url = upload_image(base_url, image, content_type)
    assert _create(client, _body(url)).json()["code"] == 422


def test_unreachable_image_url_is_422(client: httpx.Client, base_url: str) -> None:
    response = _create(client, _body(f"{base_url}/_control/files/missing.png"))
    assert response.json()["code"] == 422


def test_webp_input_is_accepted(client: httpx.Client, base_url: str) -> None:
    url = upload_image(base_url, sample_image(image_format="WEBP"), "image/webp")
    _task_id(_create(client, _body(url)))


def test_record_info_errors(client: httpx.Client) -> None:
    unknown = client.get("/kie/api/v1/jobs/recordInfo", params={"taskId": "nope"})
    missing = client.get("/kie/api/v1/jobs/recordInfo")
    assert (unknown.status_code, unknown.json()["code"]) == (200, 404)
    assert "message" in unknown.json()
    assert missing.json()["code"] == 422


@pytest.mark.parametrize(
    ("fault", "fail_code"),
    [({"fault": "task_fail"}, "500"), ({"fault": "moderation"}, "422")],
)
def test_failing_tasks(
    client: httpx.Client, image_url: str, fault: dict[str, Any], fail_code: str
) -> None:
    body = _body(image_url)
    body["_sandbox"] = fault
    record = _wait_until_done(client, _task_id(_create(client, body)))
    assert (record["state"], record["failCode"], record["resultJson"]) == ("fail", fail_code, "")
    assert record["failMsg"]


def test_fault_inside_input_is_honoured(client: httpx.Client, image_url: str) -> None:
    body = _body(image_url, _sandbox={"fault": "task_fail"})
    assert _wait_until_done(client, _task_id(_create(client, body)))["state"] == "fail"


def test_transport_faults_speak_kies_envelope(client: httpx.Client, image_url: str) -> None:
    limited = _create(
        client, _body(image_url), headers={"X-Sandbox-Fault": "rate_limit;retry_after=3"}
    )
    down = _create(client, _body(image_url), headers={"X-Sandbox-Fault": "server_error;status=503"})
    broken = _create(client, _body(image_url), headers={"X-Sandbox-Fault": "malformed"})
    assert (limited.status_code, limited.json()["code"]) == (429, 429)
    assert limited.headers["Retry-After"] == "3"
    assert (down.status_code, down.json()["code"]) == (503, 455)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()


def test_queued_poll_fault_hits_record_info_only(client: httpx.Client, image_url: str) -> None:
    client.post("/_control/faults", json={"vendor": "kie", "op": "poll", "kind": "server_error"})
    task_id = _task_id(_create(client, _body(image_url)))
    failing = client.get("/kie/api/v1/jobs/recordInfo", params={"taskId": task_id})
    assert (failing.status_code, failing.json()) == (
        500,
        {"code": 500, "message": "Server error, please try again later."},
    )
    assert _record(client, task_id)["taskId"] == task_id


def test_signed_callback(client: httpx.Client, image_url: str, receiver: CallbackReceiver) -> None:
    task_id = _task_id(_create(client, _body(image_url, receiver.url)))
    [callback] = receiver.wait_for(1)
    body = json.loads(callback.body)
    assert (body["code"], body["data"]["taskId"], body["data"]["state"]) == (
        200,
        task_id,
        "success",
    )
    assert body["msg"]
    assert json.loads(body["data"]["resultJson"])["resultUrls"]
    assert body["data"]["consumeCredits"] > 0
    timestamp = callback.headers["X-Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 10
    assert callback.headers["X-Webhook-Signature"] == _signature(task_id, timestamp)


def test_unsigned_callback_without_a_key(image_url: str, receiver: CallbackReceiver) -> None:
    with running_sandbox({"latency": 0.1}) as url:
        image = upload_image(url, sample_image())
        httpx.post(
            f"{url}/kie/api/v1/jobs/createTask", json=_body(image, receiver.url), headers=AUTH
        )
        [callback] = receiver.wait_for(1)
    assert "X-Webhook-Signature" not in callback.headers


def test_failure_callback(client: httpx.Client, image_url: str, receiver: CallbackReceiver) -> None:
    body = _body(image_url, receiver.url)
    _create(client, body, headers={"X-Sandbox-Fault": "task_fail"})
    [callback] = receiver.wait_for(1)
    payload = json.loads(callback.body)
    assert (payload["code"], payload["data"]["state"]) == (501, "fail")
    assert payload["data"]["failMsg"] == "Internal server error"


def test_callback_lost(client: httpx.Client, image_url: str, receiver: CallbackReceiver) -> None:
    fault = {"X-Sandbox-Fault": "callback_lost"}
    task_id = _task_id(_create(client, _body(image_url, receiver.url), headers=fault))
    assert _wait_until_done(client, task_id)["state"] == "success"
    deadline = time.monotonic() + 2
    while not client.get("/_control/stats").json()["kie"]["callbacks"]:
        assert time.monotonic() < deadline, "the lost callback was never counted"
        time.sleep(0.02)
    assert client.get("/_control/stats").json()["kie"]["callbacks"] == {"lost": 1}
    assert receiver.received == []


def test_queued_callback_duplicate(
    client: httpx.Client, image_url: str, receiver: CallbackReceiver
) -> None:
    client.post(
        "/_control/faults", json={"vendor": "kie", "op": "callback", "kind": "callback_duplicate"}
    )
    _create(client, _body(image_url, receiver.url))
    first, second = receiver.wait_for(2)
    assert first.body == second.body


def test_callback_early(client: httpx.Client, image_url: str, receiver: CallbackReceiver) -> None:
    fault = {"X-Sandbox-Fault": "callback_early"}
    task_id = _task_id(_create(client, _body(image_url, receiver.url), headers=fault))
    # Already there when the create answer arrives, and the task is already finished.
    assert [json.loads(c.body)["data"]["taskId"] for c in receiver.received] == [task_id]
    assert _record(client, task_id)["state"] == "success"


def test_reset_forgets_tasks_and_pending_callbacks(
    client: httpx.Client, image_url: str, receiver: CallbackReceiver
) -> None:
    task_id = _task_id(_create(client, _body(image_url, receiver.url)))
    client.post("/_control/reset")
    assert (
        client.get("/kie/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()["code"] == 404
    )
    assert receiver.wait_for(1, timeout=LATENCY + 0.3) == []


def test_stats(client: httpx.Client, image_url: str) -> None:
    task_id = _task_id(_create(client, _body(image_url)))
    _record(client, task_id)
    _record(client, task_id)
    kie = client.get("/_control/stats").json()["kie"]
    assert kie["requests"] == {"create": 1, "poll": 2}
    assert kie["tasks_created"] == 1
    assert sum(kie["per_second"].values()) == 3
