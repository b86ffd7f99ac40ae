"""CometAPI, AceData and Vtrix adapters against canned answers (httpx.MockTransport).

Every shape the vendors' documents disagree on is fed to the adapter here, including
those the sandbox does not produce.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from editqueue.providers.acedata import AceDataProvider
from editqueue.providers.base import EditRequest, ProviderError, TaskStatus
from editqueue.providers.cometapi import CometApiProvider
from editqueue.providers.vtrix import VtrixProvider, guidance_to_scale
from tests.unit.provider_fakes import PNG, Handler, canned, edit_request


def _capture(sent: list[httpx.Request], handler: Handler) -> Handler:
    def recording(request: httpx.Request) -> httpx.Response:
        request.read()
        sent.append(request)
        return handler(request)

    return recording


def _comet(handler: Handler) -> CometApiProvider:
    return CometApiProvider("key", "https://comet.test", transport=httpx.MockTransport(handler))


def _ace(handler: Handler) -> AceDataProvider:
    return AceDataProvider("key", "https://ace.test", transport=httpx.MockTransport(handler))


def _vtrix(handler: Handler) -> VtrixProvider:
    return VtrixProvider("key", "https://vtrix.test", transport=httpx.MockTransport(handler))


def _raises(call: Callable[[], Any]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


# -- CometAPI ----------------------------------------------------------------------------


def test_comet_multipart_form_for_seededit() -> None:
    sent: list[httpx.Request] = []
    answer = {"model": "m", "created": 1, "data": [{"url": "https://x/1.jpg"}], "usage": {}}
    provider = _comet(_capture(sent, canned(200, answer)))
    status = provider.submit(
        edit_request(seed=7, guidance_scale=4.5, provider_options={"x": {"a": 1}})
    )
    assert status.outputs[0].url == "https://x/1.jpg"
    [request] = sent
    assert request.url.path == "/v1/images/edits"
    assert request.headers["content-type"].startswith("multipart/form-data")
    content = request.content.decode("latin-1")
    for name, value in [
        ("model", "bytedance-seedEdit-3.0-i2i"),
        ("size", "adaptive"),
        ("watermark", "false"),
        ("seed", "7"),
        ("guidance_scale", "4.5"),
        ("x", '{"a": 1}'),
    ]:
        assert f'name="{name}"\r\n\r\n{value}\r\n' in content
    assert 'name="image"; filename="image-0.png"' in content


def test_comet_seedream_sends_every_image_and_n() -> None:
    sent: list[httpx.Request] = []
    answer = {"data": [{"url": "https://x/1.jpg"}, {"url": "https://x/2.jpg"}]}
    images = [edit_request().images[0]] * 2
    request = edit_request("seedream-4.0-edit", images=images, aspect_ratio="1:1", n=2)
    _comet(_capture(sent, canned(200, answer))).submit(request)
    content = sent[0].content.decode("latin-1")
    assert content.count('name="image"') == 2
    assert 'name="n"\r\n\r\n2\r\n' in content
    assert 'name="size"\r\n\r\n2048x2048\r\n' in content


@pytest.mark.parametrize(
    ("status", "error", "code", "retryable"),
    [
        (500, {"code": "invalid_request", "message": "bad form"}, "invalid_request", False),
        (524, {"code": "", "message": "timeout"}, "timeout", True),
        (503, {"code": "", "message": "no channel"}, "provider_unavailable", True),
        (400, {"code": "", "message": "image format not supported"}, "invalid_image", False),
        (400, {"code": "", "message": "model name is required"}, "invalid_request", False),
        (403, {"code": "", "message": "prompt flagged by moderation"}, "content_rejected", False),
        (403, {"code": "", "message": "not allowed"}, "provider_error", False),
        (401, {"code": "", "message": "Invalid token"}, "provider_error", False),
    ],
)
def test_comet_error_envelope_mapping(
    status: int, error: dict[str, str], code: str, retryable: bool
) -> None:
    envelope = {"error": {**error, "type": "comet_api_error"}}
    failure = _raises(lambda: _comet(canned(status, envelope)).submit(edit_request()))
    assert (failure.code, failure.retryable, failure.status_code) == (code, retryable, status)
    assert failure.provider_code == (error["code"] or None)


def test_comet_redirect_or_html_is_not_retried() -> None:
    moved = canned(301, "<html>moved</html>", {"Location": "https://comet.test/v1/"})
    failure = _raises(lambda: _comet(moved).submit(edit_request()))
    assert (failure.code, failure.retryable) == ("provider_error", False)


def test_comet_error_inside_a_200_and_inline_images() -> None:
    refused = {"error": {"code": "", "message": "sensitive content detected"}}
    assert _raises(lambda: _comet(canned(200, refused)).submit(edit_request())).code == (
        "content_rejected"
    )
    inline = {"data": [{"b64_json": base64.b64encode(PNG).decode()}]}
    [output] = _comet(canned(200, inline)).submit(edit_request()).outputs
    assert (output.data, output.content_type) == (PNG, "image/png")


# -- Vtrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("guidance", "scale"), [(1, 0.0), (5.5, 0.5), (10, 1.0), (3.25, 0.25)])
def test_vtrix_guidance_maps_linearly_onto_scale(guidance: float, scale: float) -> None:
    assert guidance_to_scale(guidance) == scale


def test_vtrix_request_body_is_wrapped_in_input_params() -> None:
    sent: list[httpx.Request] = []
    created = {"id": "t1", "status": "in_progress", "model": "spark_edit_3_0_i2i"}
    provider = _vtrix(_capture(sent, canned(200, created)))
    provider.submit(
        edit_request(seed=4, guidance_scale=5.5, size="1024x768", provider_options={"a": 1})
    )
    body = json.loads(sent[0].content)
    assert body == {
        "model": "spark_edit_3_0_i2i",
        "input": [
            {
                "params": {
                    "prompt": "make it blue",
                    "image": "https://files.test/in.png",
                    "scale": 0.5,
                    "seed": 4,
                    "size": "1024x768",
                    "a": 1,
                }
            }
        ],
    }
    assert "size" not in json.loads(_body_of(edit_request(size="adaptive")))["input"][0]["params"]


def _body_of(request: EditRequest) -> bytes:
    sent: list[httpx.Request] = []
    _vtrix(_capture(sent, canned(200, {"id": "t", "status": "in_progress"}))).submit(request)
    return sent[0].content


def test_vtrix_create_answer_with_output_is_already_finished() -> None:
    answer = {
        "id": "t1",
        "status": "completed",
        "output": [{"content": [{"type": "image", "url": "https://cdn/0.jpeg", "size": 9}]}],
        "usage": {"total_tokens": 3},
    }
    status = _vtrix(canned(200, answer)).submit(edit_request())
    assert (status.state, status.task_id, status.usage) == ("succeeded", "t1", {"total_tokens": 3})


@pytest.mark.parametrize("state", ["in_progress", "pending", "processing", "queued", None])
def test_vtrix_unfinished_states_are_running(state: str | None) -> None:
    status = _vtrix(canned(200, {"id": "t1", "status": state, "progress": 0.4})).poll("t1")
    assert status == TaskStatus(state="running", task_id="t1", progress=0.4)


@pytest.mark.parametrize(
    ("error", "code", "provider_code"),
    [
        ({"code": "3014095", "error_message": "Internal generation error"}, "provider_unavailable",
         "3014095"),
        ({"code": "3014006", "message": "Invalid image size"}, "invalid_image", "3014006"),
        ({"code": 3014004, "message": "Invalid prompt length"}, "invalid_request", "3014004"),
        ("Internal generation error", "provider_error", None),
        ({"code": "3014095", "error_message": "image flagged as NSFW"}, "content_rejected",
         "3014095"),
    ],
    ids=["seed-spelling", "message", "numeric", "string", "moderation"],
)  # fmt: skip
def test_vtrix_failed_task_in_every_error_spelling(
    error: Any, code: str, provider_code: str | None
) -> None:
    status = _vtrix(canned(200, {"id": "t1", "status": "failed", "error": error})).poll("t1")
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.provider_code) == (code, provider_code)


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (429, {"error": {"code": 1002, "message": "rate limited"}}, "rate_limited", True),
        (401, {"error": "unauthorized"}, "provider_error", False),
        (403, {"message": "insufficient balance"}, "provider_error", False),
        (400, {"error": {"code": "3014002", "error_message": "Missing prompt"}}, "invalid_request",
         False),
        (500, {"error": {"code": "3014099", "message": "unavailable"}}, "provider_unavailable",
         True),
        (502, "<html>bad gateway</html>", "provider_unavailable", True),
    ],
    ids=["429", "401-string", "403-top-message", "400-model-code", "500", "502-html"],
)  # fmt: skip
def test_vtrix_http_errors(status: int, body: Any, code: str, retryable: bool) -> None:
    handler = canned(status, body, {"Retry-After": "6"})
    failure = _raises(lambda: _vtrix(handler).submit(edit_request()))
    assert (failure.code, failure.retryable, failure.status_code) == (code, retryable, status)
    assert failure.retry_after == (6.0 if retryable else None)


def test_vtrix_unreadable_answers_are_retryable() -> None:
    for body in ('{"id": "t', {"status": "in_progress"}):
        failure = _raises(lambda body=body: _vtrix(canned(200, body)).submit(edit_request()))
        assert (failure.code, failure.retryable) == ("provider_error", True)


# -- AceData -----------------------------------------------------------------------------

TASK = "84d1544a-0000"
RESULT = {
    "success": True,
    "task_id": TASK,
    "trace_id": "tr",
    "data": [{"prompt": "p", "size": "1024x1024", "image_url": "https://cdn/a.jpg"}],
}
FAILURE = {
    "success": False,
    "task_id": TASK,
    "trace_id": "tr",
    "error": {"code": "api_error", "message": "fetch failed"},
}


def test_ace_callback_url_makes_the_task_async() -> None:
    sent: list[httpx.Request] = []
    provider = _ace(_capture(sent, canned(200, {"task_id": TASK})))
    status = provider.submit(edit_request(callback_url="https://api.test/cb/tok", seed=2))
    assert status == TaskStatus(state="running", task_id=TASK)
    body = json.loads(sent[0].content)
    assert (body["async"], body["callback_url"]) == (True, "https://api.test/cb/tok")
    assert body["image"] == [edit_request().images[0].data_url()]
    assert (body["model"], body["size"], body["seed"]) == ("doubao-seededit-3-0-i2i-250628",
                                                           "adaptive", 2)  # fmt: skip


def test_ace_without_callback_is_sync_and_seedream_groups() -> None:
    sent: list[httpx.Request] = []
    provider = _ace(_capture(sent, canned(200, RESULT)))
    status = provider.submit(edit_request("seedream-4.0-edit", n=3, resolution="1K"))
    assert status.state == "succeeded" and status.outputs[0].url == "https://cdn/a.jpg"
    body = json.loads(sent[0].content)
    assert "async" not in body and "callback_url" not in body
    assert body["sequential_image_generation_options"] == {"max_images": 3}


@pytest.mark.parametrize(
    "answer",
    [
        {"id": TASK, "created_at": 1.0, "started_at": 1.1, "request": {"model": "m"}},
        {"id": TASK, "request": {}, "response": {}},
        {"items": [{"id": TASK, "request": {}, "created_at": 1.0}], "count": 1},
        {"success": True, "task_id": TASK, "data": {"status": "processing"}},
        {"task_id": TASK},
    ],
    ids=["record", "record-empty-response", "batch", "data-status", "bare-id"],
)
def test_ace_running_task_in_every_shape(answer: dict[str, Any]) -> None:
    assert _ace(canned(200, answer)).poll(TASK) == TaskStatus(state="running", task_id=TASK)


@pytest.mark.parametrize(
    "answer",
    [
        {"id": TASK, "request": {}, "finished_at": 2.0, "response": RESULT},
        RESULT,
        {**RESULT, "task_id": None},
        {"success": True, "task_id": TASK,
         "data": {"status": "succeeded", "image_url": "https://cdn/a.jpg"}},
        {"items": [{"id": "other"}, {"id": TASK, "finished_at": 2.0, "response": RESULT}]},
    ],
    ids=["record", "flat", "flat-without-id", "data-status", "batch"],
)  # fmt: skip
def test_ace_finished_task_in_every_shape(answer: dict[str, Any]) -> None:
    status = _ace(canned(200, answer)).poll(TASK)
    assert (status.state, status.task_id) == ("succeeded", TASK)
    assert [o.url for o in status.outputs] == ["https://cdn/a.jpg"]


@pytest.mark.parametrize(
    "answer",
    [
        {"id": TASK, "request": {}, "finished_at": 2.0, "response": FAILURE},
        FAILURE,
        {"task_id": TASK, "data": {"status": "failed", "error": FAILURE["error"]}},
    ],
    ids=["record", "flat", "data-status"],
)
def test_ace_failed_task_in_every_shape(answer: dict[str, Any]) -> None:
    status = _ace(canned(200, answer)).poll(TASK)
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.provider_code) == ("provider_unavailable", "api_error")


@pytest.mark.parametrize("with_success", [False, True], ids=["platform-form", "guide-form"])
def test_ace_sync_error_with_or_without_success_false(with_success: bool) -> None:
    body: dict[str, Any] = {"error": {"code": "invalid_token", "message": "bad"}, "trace_id": "t"}
    if with_success:
        body["success"] = False
    failure = _raises(lambda: _ace(canned(401, body)).submit(edit_request()))
    assert (failure.code, failure.provider_code, failure.retryable) == (
        "provider_error",
        "invalid_token",
        False,
    )
    # The same body with HTTP 200 (a synchronous failure) is an error as well.
    assert _raises(lambda: _ace(canned(200, body)).submit(edit_request())).code == "provider_error"


@pytest.mark.parametrize(
    ("status", "code", "expected", "retryable"),
    [
        (400, "bad_request", "invalid_request", False),
        (400, "no_token", "provider_error", False),
        (403, "used_up", "provider_error", False),
        (403, "forbidden", "content_rejected", False),
        (404, "no_api", "provider_error", False),
        (413, "request_too_large", "invalid_image", False),
        (429, "too_many_requests", "rate_limited", True),
        (500, "api_error", "provider_unavailable", True),
        (504, "timeout", "timeout", True),
        (502, "something_new", "provider_unavailable", True),
    ],
)
def test_ace_error_codes(status: int, code: str, expected: str, retryable: bool) -> None:
    body = {"error": {"code": code, "message": "m"}, "trace_id": "t"}
    failure = _raises(
        lambda: _ace(canned(status, body, {"Retry-After": "2"})).submit(edit_request())
    )
    assert (failure.code, failure.retryable, failure.provider_code) == (expected, retryable, code)
    assert failure.retry_after == (2.0 if retryable else None)


def test_ace_results_by_url_image_url_or_inline() -> None:
    items = [
        {"image_url": "https://cdn/a.jpg"},
        {"url": "https://cdn/b.jpg"},
        {"b64_json": base64.b64encode(PNG).decode()},
    ]
    status = _ace(canned(200, {"success": True, "task_id": TASK, "data": items})).submit(
        edit_request()
    )
    assert [o.url for o in status.outputs] == ["https://cdn/a.jpg", "https://cdn/b.jpg", None]
    assert status.outputs[2].data == PNG


def test_ace_success_without_images_or_unreadable_body_is_retryable() -> None:
    for body in ({"success": True, "task_id": TASK, "data": []}, "<html>", {"trace_id": "t"}):
        failure = _raises(lambda body=body: _ace(canned(200, body)).submit(edit_request()))
        assert (failure.code, failure.retryable) == ("provider_error", True)


def test_ace_callbacks() -> None:
    provider = _ace(canned(500, {}))
    failed = provider.parse_callback({}, json.dumps({**FAILURE, "task_id": "x"}).encode())
    assert failed.task_id == "x" and failed.status is not None
    assert failed.status.state == "failed"
    # A success without images is still a notice; the worker re-reads the task.
    empty = provider.parse_callback({}, json.dumps({**RESULT, "data": []}).encode())
    assert (empty.task_id, empty.status) == (TASK, None)
    for body in (b"not json", b"[]", b'{"success": true}', b'{"task_id": "x"}'):
        with pytest.raises(ValueError):
            provider.parse_callback({}, body)
