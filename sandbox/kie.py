"""KIE emulator: `bytedance/seedream-v4-edit` market tasks, polled or called back.

Mounted under `/kie`: `POST /kie/api/v1/jobs/createTask`, `GET /kie/api/v1/jobs/recordInfo`.

Status codes: KIE documents a body `code` but not whether the HTTP status mirrors it.
This emulator mirrors it only for 401, 429 and 500 (and for injected 5xx faults); every
other outcome, validation (422) and unknown task (404) included, is HTTP 200 with the
code in the body. createTask and callbacks say `msg`, recordInfo says `message`, as in
the vendor's own examples.

Lifecycle: `waiting` → `queuing` → `generating` → `success`|`fail` over SANDBOX_LATENCY
seconds, computed from the clock at read time. Results are rendered once, on the first
read after the task ends (or when its callback fires), so their links expire
SANDBOX_URL_TTL seconds after completion.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.faults import Fault
from sandbox.imaging import KIE_ASPECTS, RESOLUTION_LONG_SIDE, kie_output_size
from sandbox.inputs import InputImageError, LoadedImage, load_image
from sandbox.kie_tasks import KieTask, KieTasks
from sandbox.state import Sandbox
from sandbox.timed_tasks import ensure_rendered, render_ahead
from sandbox.vendor import (
    answer,
    deliver_callback,
    is_authorized,
    is_int,
    planned_failure,
    public_base_url,
    retry_after_header,
    take_fault,
    wants_early_callback,
)

VENDOR = "kie"
MODEL = "bytedance/seedream-v4-edit"
MAX_PROMPT_CHARS = 5000
MAX_IMAGE_URLS = 10
MAX_OUTPUTS = 6
INPUT_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MIRRORED_CODES = frozenset({401, 429, 500})
CREDITS_PER_IMAGE = 5
MODERATION_MESSAGE = (
    "Your content was flagged as sensitive by the NSFW moderation checker. "
    "Please modify the prompt or input images and try again."
)

blueprint = Blueprint("kie", __name__)


class KieError(Exception):
    """A refusal in KIE's envelope: `{"code": …, "msg"|"message": …}`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = code if code in MIRRORED_CODES else 200


def tasks_of(sandbox: Sandbox) -> KieTasks:
    """KIE's task table inside the sandbox."""
    return sandbox.vendor_state[VENDOR]


class _KieErrorStyle:
    """KIE's spelling of the transport faults, with the op's message key."""

    def __init__(self, message_key: str) -> None:
        self.message_key = message_key

    def rate_limited(self, retry_after: float) -> Response:
        answer = _envelope(429, "Rate limited, please try again later.", self.message_key)
        answer.status_code = 429
        answer.headers.update(retry_after_header(retry_after))
        return answer

    def server_error(self, status: int) -> Response:
        # 503 is KIE's maintenance mode (body code 455); anything else is a plain 500.
        code = 455 if status == 503 else 500
        text = "Service unavailable" if code == 455 else "Server error, please try again later."
        answer = _envelope(code, text, self.message_key)
        answer.status_code = status
        return answer


# createTask and callbacks say `msg`, recordInfo says `message`.
@blueprint.post("/api/v1/jobs/createTask")
def create_task() -> Response:
    """Validate a seedream-v4-edit request and start a task."""
    respond = functools.partial(_error_response, message_key="msg")
    return answer(VENDOR, "create", _create_task, KieError, respond)


@blueprint.get("/api/v1/jobs/recordInfo")
def record_info() -> Response:
    """A task's state, with `resultJson` once it has succeeded."""
    respond = functools.partial(_error_response, message_key="message")
    return answer(VENDOR, "poll", _record_info, KieError, respond)


def _create_task(sandbox: Sandbox) -> Response:
    _require_auth(sandbox)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise KieError(422, "Request body must be a JSON object")
    fault, early = take_fault(sandbox, VENDOR, "create", body, _KieErrorStyle("msg"), _bad_fault)
    if early is not None:
        return early

    task = _new_task(sandbox, body, fault)
    table = tasks_of(sandbox)
    table.add(task)
    render_ahead(table, sandbox, VENDOR, task, "PNG")
    sandbox.stats.task_created(VENDOR)
    if task.callback_url:
        table.schedule_callback(task, functools.partial(_deliver_callback, sandbox, task))
    return _envelope(200, "success", "msg", {"taskId": task.task_id})


def _record_info(sandbox: Sandbox) -> Response:
    _require_auth(sandbox)
    _, early = take_fault(sandbox, VENDOR, "poll", None, _KieErrorStyle("message"), _bad_fault)
    if early is not None:
        return early
    task_id = request.args.get("taskId", "")
    if not task_id:
        raise KieError(422, "taskId is required")
    task = tasks_of(sandbox).get(task_id)
    if task is None:
        raise KieError(404, "Task not found")
    return _envelope(200, "success", "message", _record(sandbox, task, time.time()))


def _require_auth(sandbox: Sandbox) -> None:
    if not is_authorized(sandbox.config, request):
        raise KieError(401, "You do not have access permissions")


def _bad_fault(reason: str) -> KieError:
    """An unusable fault request, refused like a validation error."""
    return KieError(422, reason)


def _new_task(sandbox: Sandbox, body: dict[str, Any], fault: Fault | None) -> KieTask:
    if body.get("model") != MODEL:
        raise KieError(422, f"model must be {MODEL}")
    callback_url = body.get("callBackUrl")
    if callback_url is not None and not (
        isinstance(callback_url, str) and callback_url.startswith(("http://", "https://"))
    ):
        raise KieError(422, "callBackUrl must be an http(s) URL")
    params = body.get("input")
    if not isinstance(params, dict):
        raise KieError(422, "input is required")
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise KieError(422, "input.prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise KieError(422, f"input.prompt must be at most {MAX_PROMPT_CHARS} characters")
    image_size = params.get("image_size", "square_hd")
    if image_size not in KIE_ASPECTS:
        raise KieError(422, f"input.image_size must be one of {', '.join(KIE_ASPECTS)}")
    resolution = params.get("image_resolution", "1K")
    if resolution not in RESOLUTION_LONG_SIDE:
        raise KieError(422, "input.image_resolution must be one of 1K, 2K, 4K")
    outputs = params.get("max_images", 1)
    if not is_int(outputs) or not 1 <= outputs <= MAX_OUTPUTS:
        raise KieError(422, f"input.max_images must be an integer from 1 to {MAX_OUTPUTS}")
    seed = params.get("seed", -1)
    if not is_int(seed):
        raise KieError(422, "input.seed must be an integer")
    images = _load_images(params.get("image_urls"), sandbox.config.fetch_timeout)

    return KieTask(
        task_id=secrets.token_hex(16),
        prompt=prompt,
        seed=seed,
        images=images,
        size=kie_output_size(image_size, resolution),
        outputs=outputs,
        watermark=False,
        base_url=public_base_url(sandbox.config, request),
        created_at=time.time(),
        latency=0.0 if wants_early_callback(fault) else sandbox.config.task_latency(),
        fail=planned_failure(
            fault, failure=("500", "Internal server error"), moderation=("422", MODERATION_MESSAGE)
        ),
        fault=fault,
        callback_url=callback_url,
        # The original request, as the JSON string recordInfo returns.
        request={"param": json.dumps(body, ensure_ascii=False)},
    )


def _load_images(urls: Any, fetch_timeout: float) -> list[LoadedImage]:
    if not isinstance(urls, list) or not urls:
        raise KieError(422, "input.image_urls must list at least one image URL")
    if len(urls) > MAX_IMAGE_URLS:
        raise KieError(422, f"input.image_urls accepts at most {MAX_IMAGE_URLS} URLs")
    loaded = []
    for index, url in enumerate(urls):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise KieError(422, f"input.image_urls[{index}] must be an http(s) URL")
        try:
            loaded.append(load_image(url, allowed_formats=INPUT_FORMATS, timeout=fetch_timeout))
        except InputImageError as exc:
            raise KieError(422, f"input.image_urls[{index}]: {exc}") from None
    return loaded


def _record(sandbox: Sandbox, task: KieTask, now: float) -> dict[str, Any]:
    """The `data` object of recordInfo (and of callbacks) as the task stands at `now`."""
    state = task.state_at(now)
    record: dict[str, Any] = {
        "taskId": task.task_id,
        "model": MODEL,
        "state": state,
        "param": task.request["param"],
        "resultJson": "",
        "failCode": "",
        "failMsg": "",
        "createTime": _ms(task.created_at),
        "updateTime": _ms(task.changed_at(now)),
    }
    if state == "success":
        urls = [output.url for output in ensure_rendered(sandbox, VENDOR, task, "PNG")]
        record["resultJson"] = json.dumps({"resultUrls": urls})
    elif state == "fail" and task.fail:
        record["failCode"], record["failMsg"] = task.fail
    if state in ("success", "fail"):
        record["completeTime"] = _ms(task.created_at + task.latency)
        record["costTime"] = round(task.latency)
        # Clients read the credits off recordInfo too; a failed task is not billed. Only
        # the callback takes them from the balance (remainedCredits), so a poll never does.
        record["consumeCredits"] = _credits(task, state == "success")
    return record


def _credits(task: KieTask, succeeded: bool) -> int:
    """Credits the task consumed: per image on success; on failure 0, unless the task_fail
    fault asks for a billed failure with its `credits` parameter."""
    if succeeded:
        return CREDITS_PER_IMAGE * task.outputs
    if task.fault is not None and task.fault.kind == "task_fail":
        return max(0, int(task.fault.number("credits", 0)))
    return 0


def _deliver_callback(sandbox: Sandbox, task: KieTask) -> None:
    """POST the final record to `callBackUrl`, signed when a webhook key is set."""
    assert task.callback_url is not None
    key = sandbox.config.kie_webhook_key
    headers = functools.partial(_signature_headers, key, task.task_id) if key else None
    body = functools.partial(_callback_body, sandbox, task)
    deliver_callback(sandbox, VENDOR, task.callback_url, body, task.callback_fault, headers)


def _callback_body(sandbox: Sandbox, task: KieTask) -> dict[str, Any]:
    record = _record(sandbox, task, max(time.time(), task.created_at + task.latency))
    succeeded = record["state"] == "success"
    consumed = _credits(task, succeeded)
    record["consumeCredits"] = consumed
    record["remainedCredits"] = tasks_of(sandbox).charge(consumed)
    if succeeded:
        return {"code": 200, "msg": "Playground task completed successfully.", "data": record}
    return {"code": 501, "msg": "Playground task failed.", "data": record}


def _signature_headers(key: str, task_id: str) -> dict[str, str]:
    """KIE's signature headers, over the time of sending."""
    timestamp = str(int(time.time()))
    return {
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": sign_callback(key, task_id, timestamp),
    }


def sign_callback(key: str, task_id: str, timestamp: str) -> str:
    """KIE's `X-Webhook-Signature`: base64(HMAC-SHA256(key, "<taskId>.<timestamp>"))."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _envelope(
    code: int, message: str, message_key: str, data: dict[str, Any] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, message_key: message}
    if data is not None:
        body["data"] = data
    return jsonify(body)


def _error_response(error: KieError, message_key: str) -> Response:
    answer = _envelope(error.code, error.message, message_key, None)
    answer.status_code = error.http_status
    return answer


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
