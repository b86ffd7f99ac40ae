"""AceData emulator: `POST /seedream/images` (sync, callback or async) and `/seedream/tasks`.

Mounted under `/acedata`. Without `callback_url` or `async`, the edit is synchronous and
the answer is `{"success": true, "task_id", "trace_id", "data": [{prompt, size, image_url}]}`.
With `callback_url` and/or `async: true` the answer is just `{"task_id"}`; the result is
POSTed (unsigned, always with `success`) to `callback_url` when the task ends, and
`POST /acedata/seedream/tasks` `{"id", "action": "retrieve"}` (or `{"ids": [...],
"action": "retrieve_batch"}`) returns the task record `{id, trace_id, created_at,
started_at, request, …}` which gains `finished_at` and `response` (the result body) when
the task ends after SANDBOX_LATENCY seconds. There is no status field.

Errors use `{"error": {"code", "message"}, "trace_id"}` (no `success`, the platform's
documented form) with the platform's codes: `no_token` 400, `invalid_token` 401,
`bad_request` 400, `forbidden` 403 (moderation), `not_found` 404, `too_many_requests` 429,
`api_error` 500, `timeout` 504. The input image may be sent as `image` (a list, or one
string) or as `image_url` (one string), since AceData's own documents name both.
"""

from __future__ import annotations

import base64
import functools
import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.faults import Fault
from sandbox.imaging import ark_adaptive_size
from sandbox.inputs import InputImageError, LoadedImage, load_edit_inputs
from sandbox.state import Sandbox
from sandbox.timed_tasks import TaskTable, TimedTask, ensure_rendered, render_ahead
from sandbox.vendor import (
    SEED_MAX,
    answer,
    deliver_callback,
    is_authorized,
    is_int,
    is_number,
    planned_failure,
    public_base_url,
    retry_after_header,
    seedream_size,
    take_fault,
    wants_early_callback,
)

VENDOR = "acedata"
SEEDEDIT_MODELS = frozenset({"doubao-seededit-3-0-i2i-250628"})
SEEDREAM_MODELS = frozenset({"doubao-seedream-4-0-250828", "doubao-seedream-4-5-251128"})
INPUT_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
SEEDEDIT_FORMATS = frozenset({"JPEG", "PNG"})
SEEDREAM_MAX_REFERENCES = 10
SEEDREAM_MAX_OUTPUTS = 15
SEEDREAM_DEFAULT_SIZE = "2K"
# Status of each error code, from AceData's response-code table.
ERROR_STATUS = {
    "bad_request": 400,
    "no_token": 400,
    "invalid_token": 401,
    "forbidden": 403,
    "not_found": 404,
    "too_many_requests": 429,
    "api_error": 500,
    "timeout": 504,
}
MODERATION_MESSAGE = "The content was rejected by moderation: it may contain sensitive material."

blueprint = Blueprint("acedata", __name__)


class AceError(Exception):
    """A refusal in AceData's envelope."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, status: int | None = None) -> Response:
        """The HTTP answer, with its own trace id."""
        body = {"error": {"code": self.code, "message": self.message}, "trace_id": _uuid()}
        answer = jsonify(body)
        answer.status_code = status or ERROR_STATUS.get(self.code, 500)
        answer.headers.update(self.headers)
        return answer


class _AceErrorStyle:
    """AceData's spelling of the transport faults."""

    def rate_limited(self, retry_after: float) -> Response:
        headers = retry_after_header(retry_after)
        return AceError("too_many_requests", "Too many requests", headers=headers).response()

    def server_error(self, status: int) -> Response:
        if status == 504:
            return AceError("timeout", "The upstream timed out").response()
        return AceError("api_error", "fetch failed").response(status)


def tasks_of(sandbox: Sandbox) -> TaskTable[TimedTask]:
    """AceData's task table inside the sandbox."""
    return sandbox.vendor_state[VENDOR]


@blueprint.post("/seedream/images")
def images() -> Response:
    """Validate an edit; answer with the result, or with a task id when asynchronous."""
    return answer(VENDOR, "create", _images, AceError, AceError.response)


@blueprint.post("/seedream/tasks")
def tasks() -> Response:
    """Retrieve one task record, or several."""
    return answer(VENDOR, "poll", _tasks, AceError, AceError.response)


def _require_auth(sandbox: Sandbox) -> None:
    if not request.headers.get("Authorization", "").strip():
        raise AceError("no_token", "The token is not provided.")
    if not is_authorized(sandbox.config, request):
        raise AceError("invalid_token", "The specified token is invalid or wrong.")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise AceError("bad_request", "The request body must be a JSON object.")
    return body


def _images(sandbox: Sandbox) -> Response:
    _require_auth(sandbox)
    body = _json_body()
    fault, early = take_fault(sandbox, VENDOR, "create", body, _AceErrorStyle(), _bad_request)
    if early is not None:
        return early

    callback_url = _callback_url(body)
    background = callback_url is not None or body.get("async") is True
    task = _new_task(sandbox, body, fault, callback_url, background)
    table = tasks_of(sandbox)
    table.add(task)
    if not background:
        # Synchronous: the answer is the result, and failures are HTTP errors.
        time.sleep(sandbox.config.ark_latency)
        if task.fail is not None:
            raise AceError(*task.fail)
        return jsonify(_result(sandbox, task))
    render_ahead(table, sandbox, VENDOR, task)
    sandbox.stats.task_created(VENDOR)
    if callback_url is not None:
        table.schedule_callback(task, functools.partial(_send_callback, sandbox, task))
    return jsonify({"task_id": task.task_id})


def _tasks(sandbox: Sandbox) -> Response:
    _require_auth(sandbox)
    _, early = take_fault(sandbox, VENDOR, "poll", None, _AceErrorStyle(), _bad_request)
    if early is not None:
        return early
    body = _json_body()
    action = body.get("action", "retrieve")
    table = tasks_of(sandbox)
    now = time.time()
    if action == "retrieve_batch":
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise AceError("bad_request", "ids must be a list of task ids")
        found = [task for task in map(table.get, ids) if task is not None]
        items = [_record(sandbox, task, now) for task in found]
        return jsonify({"items": items, "count": len(items)})
    if action != "retrieve":
        raise AceError("bad_request", f"action {action} is not supported")
    task_id = body.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise AceError("bad_request", "id is required")
    task = table.get(task_id)
    if task is None:
        raise AceError("not_found", f"The task {task_id} does not exist.")
    return jsonify(_record(sandbox, task, now))


def _callback_url(body: dict[str, Any]) -> str | None:
    url = body.get("callback_url")
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise AceError("bad_request", "callback_url must be an http(s) URL")
    return url


def _new_task(
    sandbox: Sandbox,
    body: dict[str, Any],
    fault: Fault | None,
    callback_url: str | None,
    background: bool,
) -> TimedTask:
    model = body.get("model")
    if model not in SEEDEDIT_MODELS | SEEDREAM_MODELS:
        raise AceError("bad_request", "model is invalid.")
    seedream = model in SEEDREAM_MODELS
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise AceError("bad_request", "prompt is required.")
    images = _load_images(body, seedream, sandbox.config.fetch_timeout)
    seed = body.get("seed", -1)
    if not is_int(seed) or not -1 <= seed <= SEED_MAX:
        raise AceError("bad_request", "seed must be an integer in [-1, 2147483647].")
    guidance = body.get("guidance_scale", 5.5)
    if not is_number(guidance) or not 1 <= guidance <= 10:
        raise AceError("bad_request", "guidance_scale must be in [1, 10].")
    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise AceError("bad_request", "response_format must be url or b64_json.")
    watermark = body.get("watermark", True)
    if not isinstance(watermark, bool):
        raise AceError("bad_request", "watermark must be a boolean.")
    first = images[0].info
    if seedream:
        value = body.get("size", SEEDREAM_DEFAULT_SIZE)
        size = seedream_size("2K" if value == "adaptive" else value, first.width / first.height)
        if size is None:
            raise AceError("bad_request", "size must be 1K, 2K, 4K, adaptive or WxH.")
        outputs = _seedream_outputs(body)
    else:
        if body.get("size", "adaptive") != "adaptive":
            raise AceError("bad_request", "size must be adaptive for doubao-seededit-3-0-i2i.")
        size = ark_adaptive_size(first.width, first.height)
        outputs = 1
    now = time.time()
    return TimedTask(
        task_id=_uuid(),
        prompt=prompt,
        seed=seed,
        images=images,
        size=size,
        outputs=outputs,
        watermark=watermark,
        base_url=public_base_url(sandbox.config, request),
        created_at=now,
        latency=(
            0.0 if not background or wants_early_callback(fault) else sandbox.config.task_latency()
        ),
        fail=planned_failure(
            fault,
            failure=("api_error", "fetch failed"),
            moderation=("forbidden", MODERATION_MESSAGE),
        ),
        fault=fault,
        callback_url=callback_url,
        request={
            "trace_id": _uuid(),
            "echo": _echo(body),
            "b64": response_format == "b64_json",
        },
    )


def _load_images(body: dict[str, Any], seedream: bool, fetch_timeout: float) -> list[LoadedImage]:
    refs = body.get("image", body.get("image_url"))
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise AceError("bad_request", "image is required for editing.")
    if len(refs) > (SEEDREAM_MAX_REFERENCES if seedream else 1):
        raise AceError("bad_request", "too many images for this model.")
    formats = INPUT_FORMATS if seedream else SEEDEDIT_FORMATS
    return load_edit_inputs(
        refs, allowed_formats=formats, timeout=fetch_timeout, refuse=_image_error
    )


def _image_error(exc: InputImageError, index: int) -> AceError:
    return AceError("bad_request", f"image[{index}] is invalid: {exc}")


def _seedream_outputs(body: dict[str, Any]) -> int:
    if body.get("sequential_image_generation", "disabled") != "auto":
        return 1
    options = body.get("sequential_image_generation_options") or {}
    wanted = options.get("max_images", 1) if isinstance(options, dict) else 0
    if not is_int(wanted) or not 1 <= wanted <= SEEDREAM_MAX_OUTPUTS:
        raise AceError("bad_request", "max_images must be an integer from 1 to 15.")
    return wanted


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    """The request as the task record shows it, inline image data elided."""
    echo = {k: v for k, v in body.items() if k not in ("image", "image_url", "_sandbox")}
    echo["action"] = "generate"
    return echo


def _result(sandbox: Sandbox, task: TimedTask) -> dict[str, Any]:
    """The result body: the sync answer, the record's `response` and the callback body."""
    head = {"task_id": task.task_id, "trace_id": task.request["trace_id"]}
    if task.fail is not None:
        code, message = task.fail
        return {"success": False, **head, "error": {"code": code, "message": message}}
    size = f"{task.size[0]}x{task.size[1]}"
    items = []
    for output in ensure_rendered(sandbox, VENDOR, task):
        item: dict[str, Any] = {"prompt": task.prompt, "size": size}
        if task.request["b64"]:
            item["b64_json"] = base64.b64encode(output.data).decode()
        else:
            item["image_url"] = output.url
        items.append(item)
    return {"success": True, **head, "data": items}


def _record(sandbox: Sandbox, task: TimedTask, now: float) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": task.task_id,
        "trace_id": task.request["trace_id"],
        "type": "images",
        "created_at": round(task.created_at, 3),
        "started_at": round(task.created_at, 3),
        "request": task.request["echo"],
    }
    if task.is_done(now):
        record["finished_at"] = round(task.finished_at, 3)
        record["response"] = _result(sandbox, task)
    return record


def _send_callback(sandbox: Sandbox, task: TimedTask) -> None:
    assert task.callback_url is not None
    body = functools.partial(_result, sandbox, task)
    deliver_callback(sandbox, VENDOR, task.callback_url, body, task.callback_fault)


def _bad_request(message: str) -> AceError:
    return AceError("bad_request", message)


def _uuid() -> str:
    return str(uuid.uuid4())
