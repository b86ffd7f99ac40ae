"""Adapters against canned vendor answers (httpx.MockTransport): every documented variant."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from editqueue.providers.ark import ArkProvider
from editqueue.providers.base import (
    CallbackRejected,
    ProviderError,
)
from editqueue.providers.http import parse_retry_after
from editqueue.providers.kie import KieProvider
from tests.unit.provider_fakes import Handler, canned, edit_request, input_image

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBHOOK_KEY = "kie-hmac-key"


def _ark(handler: Handler) -> ArkProvider:
    return ArkProvider("key", "https://ark.test", transport=httpx.MockTransport(handler))


def _kie(handler: Handler, webhook_key: str | None = None) -> KieProvider:
    return KieProvider(
        "key", "https://kie.test", webhook_key=webhook_key, transport=httpx.MockTransport(handler)
    )


def _capture(sent: list[httpx.Request], response: httpx.Response) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return response

    return handler


# -- Retry-After -------------------------------------------------------------------------


def test_retry_after_in_seconds_and_as_http_date() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2015 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- Ark: request ------------------------------------------------------------------------


def test_ark_seededit_request_body() -> None:
    sent: list[httpx.Request] = []
    ok = httpx.Response(200, json={"created": 1, "data": [{"url": "https://cdn.test/o.jpg"}]})
    request = edit_request(seed=21, guidance_scale=5.5, provider_options={"watermark": True})
    _ark(_capture(sent, ok)).submit(request)

    assert sent[0].url == "https://ark.test/api/v3/images/generations"
    assert sent[0].headers["Authorization"] == "Bearer key"
    body = json.loads(sent[0].content)
    assert body == {
        "model": "doubao-seededit-3-0-i2i-250628",
        "prompt": "make it blue",
        "response_format": "url",
        "watermark": True,  # provider_options win
        "image": input_image().data_url(),
        "size": "adaptive",
        "guidance_scale": 5.5,
        "seed": 21,
    }


def test_ark_seedream_request_body_with_several_images_and_outputs() -> None:
    sent: list[httpx.Request] = []
    ok = httpx.Response(200, json={"created": 1, "data": [{"url": "https://cdn.test/o.jpg"}]})
    request = edit_request(
        "seedream-4.0-edit",
        images=[input_image(), input_image()],
        aspect_ratio="16:9",
        resolution="2K",
        n=3,
    )
    _ark(_capture(sent, ok)).submit(request)

    body = json.loads(sent[0].content)
    assert body["model"] == "doubao-seedream-4-0-250828"
    assert body["image"] == [input_image().data_url()] * 2
    assert body["size"] == "2720x1536"
    assert body["sequential_image_generation_options"] == {"max_images": 3}
    assert "guidance_scale" not in body


def test_ark_seedream_size_defaults_to_the_input_aspect() -> None:
    sent: list[httpx.Request] = []
    ok = httpx.Response(200, json={"created": 1, "data": [{"url": "https://cdn.test/o.jpg"}]})
    _ark(_capture(sent, ok)).submit(edit_request("seedream-4.0-edit", resolution="1K"))
    assert json.loads(sent[0].content)["size"] == "1168x880"


def test_ark_refuses_a_model_it_does_not_serve() -> None:
    with pytest.raises(ProviderError) as info:
        _ark(canned(200, {})).submit(edit_request("spark-edit"))
    assert info.value.code == "invalid_request"


# -- Ark: answers ------------------------------------------------------------------------


def test_ark_url_answer() -> None:
    body = {
        "model": "doubao-seededit-3-0-i2i-250628",
        "created": 1753847978,
        "data": [{"url": "https://cdn.test/out.jpeg?X-Tos-Expires=86400"}],
        "usage": {"generated_images": 1, "output_tokens": 3772, "total_tokens": 3772},
    }
    status = _ark(canned(200, body)).submit(edit_request())
    assert status.state == "succeeded"
    assert [o.url for o in status.outputs] == ["https://cdn.test/out.jpeg?X-Tos-Expires=86400"]
    assert status.usage["generated_images"] == 1


def test_ark_b64_answer() -> None:
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(JPEG).decode()}]}
    status = _ark(canned(200, body)).submit(edit_request())
    assert status.outputs[0].data == JPEG
    assert status.outputs[0].content_type == "image/jpeg"


def test_ark_partial_group_answer_keeps_the_good_images() -> None:
    body = {
        "created": 1,
        "data": [
            {"url": "https://cdn.test/1.jpg"},
            {"error": {"code": "OutputImageSensitiveContentDetected", "message": "no"}},
        ],
    }
    status = _ark(canned(200, body)).submit(edit_request("seedream-4.0-edit"))
    assert [o.url for o in status.outputs] == ["https://cdn.test/1.jpg"]


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        b"\x00\x01",
        {"created": 1},
        {"created": 1, "data": []},
        {"created": 1, "data": [{"b64_json": "%%%"}]},
        {"created": 1, "data": [{"size": "1x1"}]},
    ],
    ids=["broken", "binary", "no-data", "empty-data", "bad-b64", "no-url"],
)
def test_ark_unreadable_success_is_a_retryable_provider_error(body: Any) -> None:
    with pytest.raises(ProviderError) as info:
        _ark(canned(200, body)).submit(edit_request())
    assert (info.value.code, info.value.retryable) == ("provider_error", True)


@pytest.mark.parametrize(
    ("status", "vendor_code", "param", "expected", "retryable"),
    [
        (400, "SensitiveContentDetected", "", "content_rejected", False),
        (400, "SensitiveContentDetected.SevereViolation", "", "content_rejected", False),
        (
            400,
            "InputImageSensitiveContentDetected.PrivacyInformation",
            "",
            "content_rejected",
            False,
        ),
        (400, "OutputImageRiskDetection", "", "content_rejected", False),
        (400, "InvalidParameter.OversizedImage", "image", "invalid_image", False),
        (400, "InvalidParameter.UnsupportedImageFormat", "image", "invalid_image", False),
        (400, "InvalidParameter", "image", "invalid_image", False),
        (400, "InvalidParameter", "seed", "invalid_request", False),
        (400, "MissingParameter", "prompt", "invalid_request", False),
        (400, "InvalidEndpoint.ClosedEndpoint", "", "provider_error", False),
        (401, "AuthenticationError", "", "provider_error", False),
        (403, "AccountOverdueError", "", "provider_error", False),
        (404, "InvalidEndpointOrModel.NotFound", "", "provider_error", False),
        (429, "RateLimitExceeded.EndpointRPMExceeded", "", "rate_limited", True),
        (500, "InternalServiceError", "", "provider_unavailable", True),
        (503, "ServerOverloaded", "", "provider_unavailable", True),
    ],
)
def test_ark_error_envelope_mapping(
    status: int, vendor_code: str, param: str, expected: str, retryable: bool
) -> None:
    envelope = {"error": {"code": vendor_code, "message": "m", "param": param, "type": "T"}}
    with pytest.raises(ProviderError) as info:
        _ark(canned(status, envelope)).submit(edit_request())
    error = info.value
    assert (error.code, error.retryable, error.provider_code) == (expected, retryable, vendor_code)
    assert error.provider == "ark"
    assert error.status_code == status


def test_ark_429_carries_retry_after() -> None:
    envelope = {"error": {"code": "RateLimitExceeded.EndpointRPMExceeded", "message": "slow"}}
    with pytest.raises(ProviderError) as info:
        _ark(canned(429, envelope, {"Retry-After": "12"})).submit(edit_request())
    assert info.value.retry_after == 12.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [(502, "provider_unavailable"), (429, "rate_limited"), (403, "provider_error")],
)
def test_ark_error_without_envelope_falls_back_on_the_status(status: int, expected: str) -> None:
    with pytest.raises(ProviderError) as info:
        _ark(canned(status, "<html>Bad Gateway</html>")).submit(edit_request())
    assert info.value.code == expected


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "provider_unavailable"),
        (httpx.ConnectError("refused"), "provider_unavailable"),
        (httpx.RemoteProtocolError("eof"), "provider_unavailable"),
    ],
)
def test_transport_failures_are_retryable(exception: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    with pytest.raises(ProviderError) as info:
        _ark(handler).submit(edit_request())
    assert (info.value.code, info.value.retryable) == (expected, True)


# -- KIE: request ------------------------------------------------------------------------


def test_kie_create_request_body() -> None:
    sent: list[httpx.Request] = []
    ok = httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "t1"}})
    request = edit_request(
        "seedream-4.0-edit",
        images=[input_image(), input_image()],
        aspect_ratio="3:4",
        resolution="2K",
        n=2,
        seed=-1,
        callback_url="https://eq.test/v1/callbacks/kie/tok",
        provider_options={"nsfw_checker": False},
    )
    status = _kie(_capture(sent, ok)).submit(request)

    assert (status.state, status.task_id) == ("running", "t1")
    assert sent[0].url == "https://kie.test/api/v1/jobs/createTask"
    assert json.loads(sent[0].content) == {
        "model": "bytedance/seedream-v4-edit",
        "callBackUrl": "https://eq.test/v1/callbacks/kie/tok",
        "input": {
            "prompt": "make it blue",
            "image_urls": ["https://files.test/in.png"] * 2,
            "max_images": 2,
            "image_size": "portrait_4_3",
            "image_resolution": "2K",
            "nsfw_checker": False,  # seed -1 (random) is simply left out
        },
    }


@pytest.mark.parametrize(
    ("ratio", "image_size"),
    [
        ("1:1", "square_hd"),
        ("4:3", "landscape_4_3"),
        ("3:4", "portrait_4_3"),
        ("16:9", "landscape_16_9"),
        ("9:16", "portrait_16_9"),
        ("3:2", "landscape_3_2"),
        ("2:3", "portrait_3_2"),
        ("21:9", "landscape_21_9"),
    ],
)
def test_kie_aspect_ratio_mapping(ratio: str, image_size: str) -> None:
    sent: list[httpx.Request] = []
    ok = httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "t1"}})
    _kie(_capture(sent, ok)).submit(edit_request("seedream-4.0-edit", aspect_ratio=ratio))
    assert json.loads(sent[0].content)["input"]["image_size"] == image_size


def test_kie_create_accepts_snake_case_task_id() -> None:
    answer = {"code": 200, "msg": "success", "data": {"task_id": "t2"}}
    assert _kie(canned(200, answer)).submit(edit_request("seedream-4.0-edit")).task_id == "t2"


def test_kie_refuses_unknown_ratio() -> None:
    with pytest.raises(ProviderError) as info:
        _kie(canned(200, {})).submit(edit_request("seedream-4.0-edit", aspect_ratio="5:4"))
    assert info.value.code == "invalid_request"


# -- KIE: recordInfo variants ------------------------------------------------------------


def _record(state: str, message_key: str = "message", **data: Any) -> dict[str, Any]:
    fields = {"taskId": "t1", "model": "bytedance/seedream-v4-edit", "state": state}
    return {"code": 200, message_key: "success", "data": fields | data}


@pytest.mark.parametrize("state", ["waiting", "queuing", "generating", "brand-new-state"])
@pytest.mark.parametrize("result_json", ["", None, "missing"])
def test_kie_running_states(state: str, result_json: Any) -> None:
    extra = {} if result_json == "missing" else {"resultJson": result_json, "failCode": None}
    status = _kie(canned(200, _record(state, **extra))).poll("t1")
    assert (status.state, status.task_id, status.outputs) == ("running", "t1", [])


@pytest.mark.parametrize("message_key", ["msg", "message"])
@pytest.mark.parametrize(
    "result_json",
    [
        json.dumps({"resultUrls": ["https://cdn.test/a.png", "https://cdn.test/b.png"]}),
        {"resultUrls": ["https://cdn.test/a.png", "https://cdn.test/b.png"]},
    ],
    ids=["string", "object"],
)
def test_kie_success_with_string_or_object_result(message_key: str, result_json: Any) -> None:
    record = _record("success", message_key, resultJson=result_json, consumeCredits=10)
    status = _kie(canned(200, record)).poll("t1")
    assert status.state == "succeeded"
    assert [o.url for o in status.outputs] == ["https://cdn.test/a.png", "https://cdn.test/b.png"]
    assert status.usage == {"consumeCredits": 10}


@pytest.mark.parametrize("result_json", ["", None, "{broken", json.dumps({"resultUrls": []})])
def test_kie_success_without_results_is_a_retryable_error(result_json: Any) -> None:
    with pytest.raises(ProviderError) as info:
        _kie(canned(200, _record("success", resultJson=result_json))).poll("t1")
    assert (info.value.code, info.value.retryable) == ("provider_error", True)


@pytest.mark.parametrize(
    ("fail_code", "fail_msg", "expected", "retryable"),
    [
        ("500", "Internal server error", "provider_unavailable", True),
        ("422", "The content was flagged as NSFW", "content_rejected", False),
        ("501", "Sensitive content detected in the prompt", "content_rejected", False),
        ("422", "image_urls[0] could not be downloaded", "invalid_request", False),
        ("501", "Generation failed", "provider_error", False),
        ("", "", "provider_error", False),
    ],
)
def test_kie_failed_task(fail_code: str, fail_msg: str, expected: str, retryable: bool) -> None:
    record = _record("fail", failCode=fail_code, failMsg=fail_msg)
    status = _kie(canned(200, record)).poll("t1")
    assert status.state == "failed"
    assert status.error is not None
    assert (status.error.code, status.error.retryable) == (expected, retryable)
    assert status.error.provider_code == (fail_code or None)


@pytest.mark.parametrize("mirrored", [True, False], ids=["http-mirrors-code", "http-200"])
@pytest.mark.parametrize(
    ("body_code", "expected", "retryable"),
    [
        (401, "provider_error", False),
        (402, "provider_error", False),
        (404, "provider_error", False),
        (422, "invalid_request", False),
        (429, "rate_limited", True),
        (455, "provider_unavailable", True),
        (500, "provider_unavailable", True),
        (501, "provider_error", False),
        (505, "provider_error", False),
    ],
)
def test_kie_body_codes(body_code: int, expected: str, retryable: bool, mirrored: bool) -> None:
    status = body_code if mirrored else 200
    body = {"code": body_code, "msg": "nope", "data": None}
    for call in ("submit", "poll"):
        provider = _kie(canned(status, body, {"Retry-After": "4"}))
        with pytest.raises(ProviderError) as info:
            if call == "submit":
                provider.submit(edit_request("seedream-4.0-edit"))
            else:
                provider.poll("t1")
        error = info.value
        assert (error.code, error.retryable, error.provider_code) == (
            expected,
            retryable,
            str(body_code),
        )
        assert error.retry_after == (4.0 if retryable else None)


@pytest.mark.parametrize(
    ("status", "body", "expected", "retryable"),
    [
        (200, "{broken", "provider_error", True),
        (200, {"code": 200, "msg": "success"}, "provider_error", True),
        (200, {"msg": "no code"}, "provider_error", True),
        (502, "<html>bad gateway</html>", "provider_unavailable", True),
        (401, {"error": "who are you"}, "provider_error", False),
    ],
    ids=["broken", "no-data", "no-code", "proxy-502", "foreign-401"],
)
def test_kie_unusual_envelopes(status: int, body: Any, expected: str, retryable: bool) -> None:
    with pytest.raises(ProviderError) as info:
        _kie(canned(status, body)).poll("t1")
    assert (info.value.code, info.value.retryable) == (expected, retryable)


# -- KIE: callbacks ----------------------------------------------------------------------


def _callback_body(id_key: str = "taskId") -> bytes:
    data = {
        id_key: "t1",
        "state": "success",
        "resultJson": json.dumps({"resultUrls": ["https://cdn.test/a.png"]}),
    }
    return json.dumps({"code": 200, "msg": "Playground task completed", "data": data}).encode()


def _signed(task_id: str = "t1", key: str = WEBHOOK_KEY, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return {
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": base64.b64encode(digest).decode(),
    }


@pytest.mark.parametrize("id_key", ["taskId", "task_id"])
def test_kie_callback_with_a_good_signature(id_key: str) -> None:
    provider = _kie(canned(200, {}), webhook_key=WEBHOOK_KEY)
    notice = provider.parse_callback(_signed(), _callback_body(id_key))
    assert notice.task_id == "t1"
    assert notice.status is not None
    assert [o.url for o in notice.status.outputs] == ["https://cdn.test/a.png"]


def test_kie_callback_headers_are_case_insensitive() -> None:
    provider = _kie(canned(200, {}), webhook_key=WEBHOOK_KEY)
    headers = {name.lower(): value for name, value in _signed().items()}
    assert provider.parse_callback(headers, _callback_body()).task_id == "t1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _signed(key="wrong-key"),
        _signed(task_id="t2"),
        _signed(at=time.time() - 86_400),
        _signed(at=time.time() + 86_400),
        {**_signed(), "X-Webhook-Timestamp": "yesterday"},
        {"X-Webhook-Timestamp": str(int(time.time()))},
    ],
    ids=["missing", "wrong-key", "other-task", "stale", "future", "bad-timestamp", "no-sig"],
)
def test_kie_callback_refused(headers: dict[str, str]) -> None:
    provider = _kie(canned(200, {}), webhook_key=WEBHOOK_KEY)
    with pytest.raises(CallbackRejected):
        provider.parse_callback(headers, _callback_body())


def test_kie_callback_without_a_key_needs_no_signature() -> None:
    notice = _kie(canned(200, {})).parse_callback({}, _callback_body())
    assert notice.task_id == "t1"


def test_kie_failure_callback() -> None:
    body = {
        "code": 501,
        "msg": "Playground task failed.",
        "data": {"taskId": "t1", "state": "fail", "failCode": "500", "failMsg": "Internal"},
    }
    notice = _kie(canned(200, {})).parse_callback({}, json.dumps(body).encode())
    assert notice.status is not None
    assert notice.status.state == "failed"
    assert notice.status.error is not None and notice.status.error.retryable


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"code": 200}', b'{"data": {}}'])
def test_kie_unreadable_callback(body: bytes) -> None:
    with pytest.raises(ValueError):
        _kie(canned(200, {})).parse_callback({}, body)
