"""Vtrix: `spark_edit_3_0_i2i` tasks, `POST /model/v1/generation` then polled.

The model's fields are sent wrapped in `input[0].params` (Vtrix's CLI and SeaArt's SDK;
the doc page lists them flat). Tolerant by design where the sources disagree: `error`
comes as `{code, error_message}`, `{code, message}`, a numeric `code`, or a plain string;
any status other than `completed`/`failed` means "not finished"; a create answer that
already carries `output` is a finished task.

Guidance: our `guidance_scale` 1–10 maps linearly onto Vtrix's `scale` 0–1 as
scale = (guidance_scale − 1) / 9, so the shared default 5.5 lands on Vtrix's default 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

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
    decided_error,
    json_object,
    json_or_none,
    malformed,
    mentions_moderation,
    output_from_item,
    retry_after_of,
    send,
    served_model,
    usage_of,
)

NAME = "vtrix"
GENERATION_PATH = "/model/v1/generation"
TASK_PATH = "/model/v1/generation/task/{task_id}"
MODEL_IDS = {"seededit-3.0": "spark_edit_3_0_i2i"}
GUIDANCE_MIN, GUIDANCE_MAX = 1.0, 10.0

# 3014xxx model codes (the seed page's table) → (public code, retryable).
_IMAGE_CODES = frozenset({3014005, 3014006})
_REQUEST_CODES = range(3014001, 3014011)
_UPSTREAM_CODES = range(3014095, 3014100)


class VtrixProvider(HttpProvider):
    """Adapter for Vtrix's generation task API."""

    name = NAME
    supports_callback = False
    supports_poll = True

    def submit(self, request: EditRequest) -> TaskStatus:
        """Create a task; usually answers `running` with its id."""
        body = build_request_body(request)
        response = send(self._client, NAME, "POST", GENERATION_PATH, json=body)
        status = parse_task(_unwrap(response))
        if not status.task_id:
            raise malformed(NAME, "create answer has no task id")
        return status

    def poll(self, task_id: str) -> TaskStatus:
        """Read the task; a failed task is a status, not an exception."""
        path = TASK_PATH.format(task_id=quote(task_id, safe=""))
        response = send(self._client, NAME, "GET", path)
        return parse_task(_unwrap(response))

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """Vtrix documents no callbacks for this model."""
        raise ValueError("vtrix sends no callbacks")


def guidance_to_scale(guidance_scale: float) -> float:
    """Our 1–10 guidance as Vtrix's 0–1 `scale`: (g − 1) / 9, clamped."""
    share = (guidance_scale - GUIDANCE_MIN) / (GUIDANCE_MAX - GUIDANCE_MIN)
    return round(min(1.0, max(0.0, share)), 4)


def build_request_body(request: EditRequest) -> dict[str, Any]:
    """`{"model", "input": [{"params": …}]}`; `provider_options` merged into the params."""
    model = served_model(NAME, MODEL_IDS, request)
    # A link keeps the body small; the doc allows "URL or Base64" but not which Base64 form.
    params: dict[str, Any] = {"prompt": request.prompt, "image": request.images[0].url}
    if request.guidance_scale is not None:
        params["scale"] = guidance_to_scale(request.guidance_scale)
    if request.seed is not None:
        params["seed"] = request.seed
    if request.size and request.size != "adaptive":
        params["size"] = request.size
    params.update(request.provider_options)
    return {"model": model, "input": [{"params": params}]}


def parse_task(body: Mapping[str, Any]) -> TaskStatus:
    """A create or poll answer as a TaskStatus."""
    task_id = str(body.get("id") or body.get("task_id") or "") or None
    state = body.get("status")
    if state == "completed" or (state is None and body.get("output")):
        outputs = _outputs(body.get("output"))
        if not outputs:
            raise malformed(NAME, "completed task without output")
        return TaskStatus(state="succeeded", task_id=task_id, outputs=outputs, usage=usage_of(body))
    if state == "failed":
        vendor_code, message = error_fields(body)
        error = map_error(None, vendor_code, message or "vtrix task failed", None)
        return TaskStatus(state="failed", task_id=task_id, error=as_task_failure(error))
    # in_progress, pending, processing, and whatever Vtrix adds later: not finished.
    progress = body.get("progress")
    return TaskStatus(
        state="running",
        task_id=task_id,
        progress=float(progress) if isinstance(progress, int | float) else None,
    )


def error_fields(body: Mapping[str, Any]) -> tuple[str | None, str]:
    """(code, message) from any of the four documented `error` spellings."""
    error = body.get("error")
    top_message = body.get("message")
    if isinstance(error, Mapping):
        code = error.get("code")
        message = error.get("error_message") or error.get("message") or top_message
        return (str(code) if code not in (None, "") else None), str(message or "")
    if isinstance(error, str):
        return None, error
    return None, str(top_message or "")


def map_error(
    status: int | None, vendor_code: str | None, message: str, retry_after: float | None
) -> ProviderError:
    """A Vtrix error (HTTP status, where there is one, plus code and message) mapped."""
    number = int(vendor_code) if vendor_code and vendor_code.isdigit() else None
    code: ErrorCode | None = None
    retryable = False
    if mentions_moderation(message):
        code = "content_rejected"
    elif status == 429:
        code, retryable = "rate_limited", True
    elif number in _IMAGE_CODES:
        code = "invalid_image"
    elif number in _REQUEST_CODES:
        code = "invalid_request"
    elif number in _UPSTREAM_CODES or (status is not None and status >= 500):
        code, retryable = "provider_unavailable", True
    return decided_error(NAME, code, message, status, retryable, vendor_code, retry_after)


def _unwrap(response: httpx.Response) -> Mapping[str, Any]:
    """The task object of a 200 answer; raise the mapped error otherwise."""
    body = json_or_none(response)
    if response.status_code != 200:
        vendor_code, message = error_fields(body) if isinstance(body, dict) else (None, "")
        raise map_error(
            response.status_code,
            vendor_code,
            message or f"vtrix answered HTTP {response.status_code}",
            retry_after_of(response),
        )
    return json_object(NAME, response)


def _outputs(output: Any) -> list[OutputRef]:
    """Every image in `output[].content[]`."""
    if not isinstance(output, list):
        return []
    refs = []
    for entry in output:
        content = entry.get("content") if isinstance(entry, Mapping) else None
        for item in content if isinstance(content, list) else []:
            ref = output_from_item(NAME, item)
            if ref is not None:
                refs.append(ref)
    return refs
