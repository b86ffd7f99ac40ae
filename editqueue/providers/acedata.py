"""AceData: `POST /seedream/images` (SeedEdit 3.0, Seedream 4.0), sync or as a task.

With a callback URL the edit runs as a task (`callback_url` plus `async: true`), so no
worker waits for it: the callback (unsigned, so only a hint) wakes the job, and the
worker reads the result from the task query `POST /seedream/tasks`, which it also polls
when no callback comes. Without one, the call is synchronous (AceData's default).

Tolerant by design where AceData's documents disagree: a task query answers with the
task record `{id, request, response, finished_at, …}`, with the result body itself
(`{success, task_id, data[]}`), or with `{data: {status, image_url}}`; errors come with or
without `success: false`; results carry `image_url`, `url` or `b64_json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import httpx

from editqueue.providers import ark
from editqueue.providers.base import (
    CallbackNotice,
    EditRequest,
    ErrorCode,
    OutputRef,
    ProviderError,
    TaskStatus,
    as_task_failure,
)
from editqueue.providers.http import (
    HttpProvider,
    callback_notice,
    decided_error,
    error_from_envelope,
    json_object,
    malformed,
    mentions_moderation,
    output_from_item,
    send,
)

NAME = "acedata"
IMAGES_PATH = "/seedream/images"
TASKS_PATH = "/seedream/tasks"
# Canonical catalog id → AceData model id (the full strings; short names are refused).
MODEL_IDS = {
    "seededit-3.0": "doubao-seededit-3-0-i2i-250628",
    "seedream-4.0-edit": "doubao-seedream-4-0-250828",
}
# AceData's `error.code` → (public code, retryable), from its response-code table.
_ERROR_CODES: dict[str, tuple[ErrorCode, bool]] = {
    "bad_request": ("invalid_request", False),
    "forbidden": ("content_rejected", False),
    "request_too_large": ("invalid_image", False),
    "too_many_requests": ("rate_limited", True),
    "api_error": ("provider_unavailable", True),
    "timeout": ("timeout", True),
    "no_token": ("provider_error", False),
    "invalid_token": ("provider_error", False),
    "token_expired": ("provider_error", False),
    "token_mismatched": ("provider_error", False),
    "used_up": ("provider_error", False),
    "disabled": ("provider_error", False),
    "api_not_implemented": ("provider_error", False),
    "no_api": ("provider_error", False),
    "not_found": ("provider_error", False),
}
_RECORD_KEYS = frozenset({"request", "response", "finished_at", "started_at"})


class AceDataProvider(HttpProvider):
    """Adapter for AceData's Seedream images API and its task query."""

    name = NAME
    supports_callback = True
    supports_poll = True

    def submit(self, request: EditRequest) -> TaskStatus:
        """Start a task (callback URL given) or run the edit synchronously."""
        body = build_request_body(request)
        response = send(self._client, NAME, "POST", IMAGES_PATH, json=body)
        answer = _unwrap(response)
        status = parse_result(answer)
        if status.state == "failed" and status.error is not None:
            # A synchronous call that failed: the same as an HTTP error.
            raise status.error
        if status.state == "running" and not status.task_id:
            raise malformed(NAME, "answer has neither a result nor a task_id")
        return status

    def poll(self, task_id: str) -> TaskStatus:
        """Retrieve the task; a failed task is a status, not an exception."""
        query = {"id": task_id, "action": "retrieve"}
        response = send(self._client, NAME, "POST", TASKS_PATH, json=query)
        return parse_task(_unwrap(response), task_id)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """Name the task an (unsigned) callback is about; its result is only a claim."""
        try:
            payload = json.loads(body)
        except ValueError:
            raise ValueError("AceData callback body is not JSON") from None
        if not isinstance(payload, dict) or "success" not in payload:
            raise ValueError("AceData callback has no success field")
        task_id = str(payload.get("task_id") or "")
        if not task_id:
            raise ValueError("AceData callback names no task")
        return callback_notice(task_id, lambda: parse_result(payload))


def build_request_body(request: EditRequest) -> dict[str, Any]:
    """The `/seedream/images` body; `provider_options` merged in last."""
    body = ark.seed_fields(request, NAME, MODEL_IDS)
    # Inline data: AceData need not reach our storage; `image` is the documented field.
    body["image"] = [image.data_url() for image in request.images]
    if request.model != "seededit-3.0" and request.n > 1:
        body["sequential_image_generation"] = "auto"
        body["sequential_image_generation_options"] = {"max_images": request.n}
    if request.callback_url:
        body["callback_url"] = request.callback_url
        body["async"] = True
    body.update(request.provider_options)
    return body


def parse_result(body: Mapping[str, Any]) -> TaskStatus:
    """A result body (sync answer, callback, a record's `response`) or a bare `{task_id}`."""
    task_id = str(body.get("task_id") or "") or None
    error = body.get("error")
    if body.get("success") is False or isinstance(error, Mapping):
        envelope = error if isinstance(error, Mapping) else {}
        failure = as_task_failure(map_error(None, envelope, None))
        return TaskStatus(state="failed", task_id=task_id, error=failure)
    items = body.get("data")
    if body.get("success") is True or isinstance(items, list):
        return TaskStatus(state="succeeded", task_id=task_id, outputs=_outputs(items))
    return TaskStatus(state="running", task_id=task_id)


def parse_task(body: Mapping[str, Any], task_id: str) -> TaskStatus:
    """A task query answer in any of its documented shapes."""
    items = body.get("items")
    if isinstance(items, list):
        # A batch answer: our task's record, if it is there.
        mine = [i for i in items if isinstance(i, Mapping) and i.get("id") == task_id]
        if not mine:
            raise malformed(NAME, f"task {task_id} missing from the batch answer")
        body = mine[0]
    if _RECORD_KEYS & body.keys():
        # The task record: finished once `response` is there (no status field).
        response = body.get("response")
        if not isinstance(response, Mapping) or not response:
            return TaskStatus(state="running", task_id=task_id)
        return _with_task_id(parse_result(response), task_id)
    data = body.get("data")
    if isinstance(data, Mapping):
        return _status_shape(body, data, task_id)
    return _with_task_id(parse_result(body), task_id)


def map_error(
    status: int | None, envelope: Mapping[str, Any], retry_after: float | None
) -> ProviderError:
    """AceData's `{"code", "message"}` to the public vocabulary."""
    vendor_code = str(envelope.get("code") or "") or None
    message = str(envelope.get("message") or vendor_code or "acedata request failed")
    known = _ERROR_CODES.get(vendor_code or "")
    code: ErrorCode | None = None
    retryable = False
    if known is not None:
        code, retryable = known
    elif mentions_moderation(message):
        code = "content_rejected"
    if code == "invalid_request" and "image" in message.lower():
        code = "invalid_image"
    return decided_error(NAME, code, message, status, retryable, vendor_code, retry_after)


def _unwrap(response: httpx.Response) -> Mapping[str, Any]:
    """The JSON object of a 200 answer; raise the mapped error otherwise."""
    if response.status_code != 200:
        raise error_from_envelope(NAME, response, map_error)
    return json_object(NAME, response)


def _status_shape(body: Mapping[str, Any], data: Mapping[str, Any], task_id: str) -> TaskStatus:
    """The `{"data": {"status": "succeeded", "image_url": …}}` shape of one client guide."""
    state = data.get("status")
    if state == "succeeded":
        urls = data.get("image_urls") or [data.get("image_url") or data.get("url")]
        return TaskStatus(
            state="succeeded",
            task_id=task_id,
            outputs=_outputs([{"image_url": url} for url in urls]),
        )
    if state == "failed":
        envelope = data.get("error") or body.get("error") or {}
        error = map_error(None, envelope if isinstance(envelope, Mapping) else {}, None)
        return TaskStatus(state="failed", task_id=task_id, error=as_task_failure(error))
    return TaskStatus(state="running", task_id=task_id)


def _outputs(items: Any) -> list[OutputRef]:
    """Every result of a `data` list; a success without any is unreadable."""
    found = [output_from_item(NAME, item) for item in items or []]
    refs = [ref for ref in found if ref is not None]
    if not refs:
        raise malformed(NAME, "successful answer without images")
    return refs


def _with_task_id(status: TaskStatus, task_id: str) -> TaskStatus:
    """Shapes that omit the id still answer for the task we asked about."""
    return status if status.task_id else dataclasses.replace(status, task_id=task_id)
