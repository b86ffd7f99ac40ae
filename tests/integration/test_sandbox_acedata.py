"""The AceData emulator over real HTTP: sync, async and callback modes, task records."""

from __future__ import annotations

import base64
import functools
import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import data_url
from tests.integration.sandbox_server import (
    CallbackReceiver,
    emulator_fixtures,
    poll_until,
    running_sandbox,
    sample_image,
)

SEEDEDIT = "doubao-seededit-3-0-i2i-250628"
SEEDREAM = "doubao-seedream-4-0-250828"
LATENCY = 0.2


base_url, image_url, client, receiver = emulator_fixtures({"latency": LATENCY})


def _body(image: str, **fields: Any) -> dict[str, Any]:
    return {"model": SEEDEDIT, "prompt": "golden sunset", "image": [image], **fields}


def _images(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return client.post("/acedata/seedream/images", json=body, **kwargs)


def _retrieve(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.post("/acedata/seedream/tasks", json={"id": task_id, "action": "retrieve"})
    assert response.status_code == 200, response.text
    return response.json()


def _finished_record(client: httpx.Client, task_id: str) -> dict[str, Any]:
    read = functools.partial(_retrieve, client, task_id)
    return poll_until(read, lambda record: "finished_at" in record)


def test_sync_answer_carries_the_result(client: httpx.Client, image_url: str) -> None:
    response = _images(client, _body(image_url, seed=3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["task_id"] and body["trace_id"]
    [item] = body["data"]
    assert (item["prompt"], item["size"]) == ("golden sunset", "1152x864")
    picture = Image.open(io.BytesIO(httpx.get(item["image_url"]).content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))
    # Synchronous calls are tasks too, finished already.
    assert _retrieve(client, body["task_id"])["response"] == body


@pytest.mark.parametrize(
    "image_field",
    [{"image_url": "URL"}, {"image": "URL"}, {"image": ["DATA"]}],
    ids=["image_url", "image-string", "image-data-url"],
)
def test_every_documented_image_field_is_accepted(
    client: httpx.Client, image_url: str, image_field: dict[str, Any]
) -> None:
    text = json.dumps(image_field)
    text = text.replace("URL", image_url).replace("DATA", data_url(sample_image()))
    body = {"model": SEEDEDIT, "prompt": "p", **json.loads(text)}
    assert _images(client, body).json()["success"] is True


def test_seedream_group_as_b64(client: httpx.Client, image_url: str) -> None:
    body = _body(
        image_url,
        model=SEEDREAM,
        size="1K",
        response_format="b64_json",
        sequential_image_generation="auto",
        sequential_image_generation_options={"max_images": 2},
    )
    items = _images(client, body).json()["data"]
    sizes = {Image.open(io.BytesIO(base64.b64decode(i["b64_json"]))).size for i in items}
    assert len(items) == 2 and sizes == {(1024, 768)}


def test_async_task_record_gains_finished_at_and_response(
    client: httpx.Client, image_url: str
) -> None:
    created = _images(client, _body(image_url, **{"async": True}))
    assert created.status_code == 200 and set(created.json()) == {"task_id"}
    task_id = created.json()["task_id"]
    running = _retrieve(client, task_id)
    assert running["id"] == task_id and running["request"]["model"] == SEEDEDIT
    assert "finished_at" not in running and "response" not in running
    assert "status" not in running  # AceData tasks have no status field

    record = _finished_record(client, task_id)
    assert record["finished_at"] >= record["started_at"] >= record["created_at"]
    assert record["response"]["success"] is True
    assert record["response"]["data"][0]["image_url"]

    batch = client.post(
        "/acedata/seedream/tasks", json={"ids": [task_id, "nope"], "action": "retrieve_batch"}
    ).json()
    assert batch["count"] == 1 and batch["items"][0]["id"] == task_id


def test_callback_is_unsigned_and_always_says_success(
    client: httpx.Client, image_url: str, receiver: CallbackReceiver
) -> None:
    ok = _images(client, _body(image_url, callback_url=receiver.url)).json()["task_id"]
    fault = {"_sandbox": {"fault": "task_fail"}}
    failed = _images(client, _body(image_url, callback_url=receiver.url, **fault)).json()["task_id"]
    bodies = {}
    for callback in receiver.wait_for(2):
        assert not any(name.lower().startswith("x-webhook") for name in callback.headers)
        payload = json.loads(callback.body)
        bodies[payload["task_id"]] = payload
    assert bodies[ok]["success"] is True and bodies[ok]["data"]
    assert bodies[failed]["success"] is False
    assert bodies[failed]["error"] == {"code": "api_error", "message": "fetch failed"}
    # The sender counts a callback once the receiver has answered: allow it a moment.
    deadline = time.monotonic() + 2
    while _callbacks_counted(client) != {"sent": 2} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _callbacks_counted(client) == {"sent": 2}


def _callbacks_counted(client: httpx.Client) -> dict[str, int]:
    return client.get("/_control/stats").json()["acedata"]["callbacks"]


@pytest.mark.parametrize(
    ("kind", "copies"), [("callback_lost", 0), ("callback_duplicate", 2), ("callback_early", 1)]
)
def test_callback_faults(
    client: httpx.Client, image_url: str, receiver: CallbackReceiver, kind: str, copies: int
) -> None:
    body = _body(image_url, callback_url=receiver.url, _sandbox={"fault": kind})
    task_id = _images(client, body).json()["task_id"]
    if kind == "callback_early":
        # Sent before the create answer returned.
        assert len(receiver.received) == 1
    time.sleep(LATENCY + 0.3)
    assert len(receiver.received) == copies
    assert all(json.loads(c.body)["task_id"] == task_id for c in receiver.received)


def test_auth_errors(base_url: str, image_url: str) -> None:
    missing = httpx.post(f"{base_url}/acedata/seedream/images", json=_body(image_url))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "no_token"
    assert missing.json()["trace_id"] and "success" not in missing.json()
    with running_sandbox({"api_keys": "right"}) as url:
        wrong = httpx.post(
            f"{url}/acedata/seedream/images",
            json=_body(image_url),
            headers={"Authorization": "Bearer wrong"},
        )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    "change",
    [
        {"model": "doubao-seededit"},
        {"prompt": ""},
        {"image": []},
        {"image": ["IMG", "IMG"]},
        {"image": [data_url(sample_image((400, 100)))]},
        {"size": "2K"},
        {"seed": -2},
        {"guidance_scale": 0.5},
        {"watermark": "yes"},
        {"callback_url": "ftp://x"},
    ],
    ids=["model", "prompt", "no-image", "two-images", "ratio", "size", "seed", "guidance",
         "watermark", "callback-url"],
)  # fmt: skip
def test_validation_is_bad_request(
    client: httpx.Client, image_url: str, change: dict[str, Any]
) -> None:
    body = {**_body(image_url), **change}
    if body["image"] == ["IMG", "IMG"]:
        body["image"] = [image_url, image_url]
    response = _images(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_task_queries_refuse_unknown_ids_and_actions(client: httpx.Client) -> None:
    unknown = client.post("/acedata/seedream/tasks", json={"id": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    odd = client.post("/acedata/seedream/tasks", json={"id": "x", "action": "delete"})
    assert odd.status_code == 400


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("rate_limit;retry_after=2", 429, "too_many_requests"),
        ("server_error;status=500", 500, "api_error"),
        ("server_error;status=504", 504, "timeout"),
        ("moderation", 403, "forbidden"),
        ("task_fail", 500, "api_error"),
    ],
)
def test_sync_faults_speak_acedatas_envelope(
    client: httpx.Client, image_url: str, fault: str, status: int, code: str
) -> None:
    response = _images(client, _body(image_url), headers={"X-Sandbox-Fault": fault})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if status == 429:
        assert response.headers["Retry-After"] == "2"


def test_moderated_task_and_stats(client: httpx.Client, image_url: str) -> None:
    body = _body(image_url, _sandbox={"fault": "moderation"}, **{"async": True})
    task_id = _images(client, body).json()["task_id"]
    response = _finished_record(client, task_id)["response"]
    assert response["success"] is False and response["error"]["code"] == "forbidden"
    stats = client.get("/_control/stats").json()["acedata"]
    assert stats["requests"]["create"] == 1 and stats["requests"]["poll"] >= 1
    assert stats["tasks_created"] == 1
