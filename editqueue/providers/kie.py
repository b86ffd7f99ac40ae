"""KIE market API: `bytedance/seedream-v4-edit` tasks, polled via recordInfo or called back.

Tolerant by design, because KIE's documents disagree with each other: the message key is
`msg` or `message`; `resultJson` is a JSON string, an object, `""` or null; the task id is
`taskId` or `task_id`; errors come as HTTP 200 with a body `code` or with a mirrored status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from editqueue.providers.base import (
    CallbackNotice,
    CallbackRejected,
    EditRequest,
    ErrorCode,
    OutputRef,
    ProviderError,
    RequestRejected,
    TaskStatus,
    as_task_failure,
)
from editqueue.providers.http import (
    HttpProvider,
    callback_notice,
    error_for_status,
    json_or_none,
    malformed,
    mapped_error,
    mentions_moderation,
    model_id,
    retry_after_of,
    send,
)

NAME = "kie"
CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"
MODEL_IDS = {"seedream-4.0-edit": "bytedance/seedream-v4-edit"}
IMAGE_SIZES = {
    "1:1": "square_hd",
    "4:3": "landscape_4_3",
    "3:4": "portrait_4_3",
    "16:9": "landscape_16_9",
    "9:16": "portrait_16_9",
    "3:2": "landscape_3_2",
    "2:3": "portrait_3_2",
    "21:9": "landscape_21_9",
}
RESOLUTIONS = frozenset({"1K", "2K", "4K"})
RUNNING_STATES = frozenset({"waiting", "queuing", "generating"})
# KIE states no replay window; five minutes is the common choice for signed webhooks.
CALLBACK_MAX_AGE = 300

# Body `code` → (public code, retryable), from KIE's documented code table.
_BODY_CODES: dict[int, tuple[ErrorCode, bool]] = {
    401: ("provider_error", False),
    402: ("provider_error", False),
    404: ("provider_error", False),
    422: ("invalid_request", False),
    429: ("rate_limited", True),
    455: ("provider_unavailable", True),
    500: ("provider_unavailable", True),
    501: ("provider_error", False),
    505: ("provider_error", False),
}
_RETRYABLE_FAIL_CODES = frozenset({"455", "500", "502", "503", "504"})
# KIE's failMsg may also call a refusal a "safety" matter; only KIE's wording counts it.
_EXTRA_MODERATION_WORDS = ("safety",)


class KieProvider(HttpProvider):
    """Adapter for KIE's createTask / recordInfo pair and its signed callbacks."""

    name = NAME
    supports_callback = True
    supports_poll = True

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 120.0,
        webhook_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout=timeout, transport=transport)
        self._webhook_key = webhook_key or None

    def submit(self, request: EditRequest) -> TaskStatus:
        """Create a task; the answer only names it."""
        body = build_request_body(request)
        response = send(self._client, NAME, "POST", CREATE_PATH, json=body)
        data = _unwrap(response)
        task_id = _task_id(data)
        if not task_id:
            raise malformed(NAME, "createTask answer has no taskId")
        return TaskStatus(state="running", task_id=task_id)

    def poll(self, task_id: str) -> TaskStatus:
        """Read the task's record; a failed task is a status, not an exception."""
        response = send(self._client, NAME, "GET", RECORD_PATH, params={"taskId": task_id})
        return parse_record(_unwrap(response))

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """Verify KIE's HMAC headers (when a key is set) and name the task the body is about.

        The HMAC covers only `taskId.timestamp`, not the record, so the record's state and
        links stay a claim: the service acts on the task id alone and polls recordInfo.
        """
        try:
            envelope = json.loads(body)
        except ValueError:
            raise ValueError("KIE callback body is not JSON") from None
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict):
            raise ValueError("KIE callback has no data object")
        task_id = _task_id(data)
        if self._webhook_key:
            verify_signature(self._webhook_key, task_id, headers)
        if not task_id:
            raise ValueError("KIE callback names no task")
        return callback_notice(task_id, lambda: parse_record(data))


def build_request_body(request: EditRequest) -> dict[str, Any]:
    """The createTask body; `provider_options` are merged into `input` (the model's fields)."""
    # Only the model is checked here: KIE itself judges the images (`image_urls`).
    model = model_id(NAME, MODEL_IDS, request)
    params: dict[str, Any] = {
        "prompt": request.prompt,
        "image_urls": [image.url for image in request.images],
        "max_images": request.n,
    }
    if request.aspect_ratio:
        if request.aspect_ratio not in IMAGE_SIZES:
            raise RequestRejected(
                "invalid_request", f"kie has no aspect ratio {request.aspect_ratio}", provider=NAME
            )
        params["image_size"] = IMAGE_SIZES[request.aspect_ratio]
    if request.resolution:
        if request.resolution not in RESOLUTIONS:
            raise RequestRejected(
                "invalid_request", f"kie has no resolution {request.resolution}", provider=NAME
            )
        params["image_resolution"] = request.resolution
    if request.seed is not None and request.seed >= 0:
        params["seed"] = request.seed
    params.update(request.provider_options)
    body: dict[str, Any] = {"model": model, "input": params}
    if request.callback_url:
        body["callBackUrl"] = request.callback_url
    return body


def parse_record(data: Mapping[str, Any]) -> TaskStatus:
    """A recordInfo / callback `data` object as a TaskStatus."""
    task_id = _task_id(data) or None
    state = data.get("state")
    usage = {k: data[k] for k in ("consumeCredits", "costTime") if data.get(k) is not None}
    if state == "success":
        outputs = [OutputRef(url=url) for url in _result_urls(data.get("resultJson"))]
        if not outputs:
            raise malformed(NAME, "successful task without resultUrls")
        return TaskStatus(state="succeeded", task_id=task_id, outputs=outputs, usage=usage)
    if state == "fail":
        error = fail_error(data.get("failCode"), data.get("failMsg"))
        return TaskStatus(
            state="failed", task_id=task_id, usage=usage, error=as_task_failure(error)
        )
    # waiting / queuing / generating, and any state KIE adds later: keep waiting.
    return TaskStatus(state="running", task_id=task_id)


def fail_error(fail_code: Any, fail_msg: Any) -> ProviderError:
    """Map a failed task's `failCode` / `failMsg`; moderation is recognised by its wording."""
    vendor_code = str(fail_code) if fail_code not in (None, "") else None
    message = str(fail_msg or "KIE task failed")
    code: ErrorCode
    retryable = False
    if mentions_moderation(message, _EXTRA_MODERATION_WORDS):
        code = "content_rejected"
    elif vendor_code in _RETRYABLE_FAIL_CODES:
        code, retryable = "provider_unavailable", True
    elif vendor_code in ("400", "422"):
        code = "invalid_request"
    elif vendor_code == "429":
        code, retryable = "rate_limited", True
    else:
        code = "provider_error"
    return mapped_error(NAME, code, message, retryable=retryable, provider_code=vendor_code)


def verify_signature(
    key: str, task_id: str, headers: Mapping[str, str], *, now: float | None = None
) -> None:
    """Check `X-Webhook-Signature` = base64(HMAC-SHA256(key, "taskId.timestamp")) and its age."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get("x-webhook-timestamp", "")
    signature = lowered.get("x-webhook-signature", "")
    if not task_id or not timestamp or not signature:
        raise CallbackRejected("KIE callback is missing its signature headers or task id")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        raise CallbackRejected("KIE callback timestamp is not a number") from None
    if abs(age) > CALLBACK_MAX_AGE:
        raise CallbackRejected("KIE callback timestamp is outside the accepted window")
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), signature.strip()):
        raise CallbackRejected("KIE callback signature does not match")


def _unwrap(response: httpx.Response) -> dict[str, Any]:
    """The `data` object of a successful envelope; raise the mapped error otherwise."""
    status = response.status_code
    retry_after = retry_after_of(response)
    body = json_or_none(response)
    body_code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(body_code, int) or isinstance(body_code, bool):
        # No usable envelope (a proxy's error page, a cut-off body): only the status is left.
        if status != 200:
            message = _message(body) or f"kie answered HTTP {status}"
            raise error_for_status(NAME, status, message, retry_after=retry_after)
        raise malformed(NAME, "body is not a KIE envelope", status_code=status)
    message = _message(body)
    if body_code != 200:
        raise _body_code_error(body_code, message, status, retry_after)
    if status != 200:
        raise error_for_status(
            NAME, status, message or "kie request failed", retry_after=retry_after
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise malformed(NAME, "body has no data object", status_code=status)
    return data


def _message(body: Any) -> str:
    """The envelope's message: createTask says `msg`, recordInfo says `message`."""
    if not isinstance(body, dict):
        return ""
    return str(body.get("msg") or body.get("message") or "")


def _body_code_error(
    body_code: int, message: str, status: int, retry_after: float | None
) -> ProviderError:
    code, retryable = _BODY_CODES.get(
        body_code, ("provider_unavailable", True) if body_code >= 500 else ("provider_error", False)
    )
    return mapped_error(
        NAME,
        code,
        message or f"kie answered code {body_code}",
        retryable=retryable,
        provider_code=str(body_code),
        status_code=status,
        retry_after=retry_after,
    )


def _result_urls(result_json: Any) -> list[str]:
    """`resultUrls` from `resultJson`, which may be a JSON string or already an object."""
    if result_json in (None, ""):
        return []
    if isinstance(result_json, str):
        try:
            result_json = json.loads(result_json)
        except ValueError:
            raise malformed(NAME, "resultJson is not JSON") from None
    urls = result_json.get("resultUrls") if isinstance(result_json, dict) else None
    if not isinstance(urls, list):
        return []
    return [url for url in urls if isinstance(url, str) and url]


def _task_id(data: Mapping[str, Any]) -> str:
    """The task id, spelled `taskId` (documented) or `task_id` (KIE's own JS sample)."""
    value = data.get("taskId") or data.get("task_id")
    return str(value) if value else ""
