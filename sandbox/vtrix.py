"""Vtrix emulator: `spark_edit_3_0_i2i` generation tasks, polled.

Mounted under `/vtrix`: `POST /vtrix/model/v1/generation` creates a task,
`GET /vtrix/model/v1/generation/task/<id>` reads it. The model's fields are accepted
flat next to `model` (the doc page) or wrapped in `input[0].params` (Vtrix's CLI and
SeaArt's SDK).

Errors: model checks answer HTTP 400 with the seed's spelling
`{"error": {"code": "3014xxx", "error_message": …}}`; gateway errors (401, 429, 5xx) use
the SeaArt SDK's `{"error": {"code": <number>, "message": …}}`. A failed task carries the
seed's spelling too, unless its `task_fail` fault asks for another documented one with
`error_shape` = `message` (`code` + `message`), `numeric` (numeric `code`) or `string`
(`error` is a plain string).

Lifecycle: `in_progress` with `progress` 0→1 over SANDBOX_LATENCY seconds, then
`completed` (JPEG results) or `failed`, computed from the clock at read time.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.faults import BODY_FIELD, Fault
from sandbox.imaging import ark_adaptive_size
from sandbox.inputs import InputImageError, LoadedImage, load_edit_inputs
from sandbox.state import Sandbox
from sandbox.timed_tasks import TaskTable, TimedTask, ensure_rendered, render_ahead
from sandbox.vendor import (
    SEED_MAX,
    answer,
    is_authorized,
    is_int,
    is_number,
    parse_wxh,
    planned_failure,
    public_base_url,
    retry_after_header,
    take_fault,
)

VENDOR = "vtrix"
MODEL = "spark_edit_3_0_i2i"
MAX_PROMPT_CHARS = 800
INPUT_FORMATS = frozenset({"JPEG", "PNG"})
# Output side bounds documented for the sibling model spark_edit_3_0 (best guess here).
MIN_SIDE, MAX_SIDE = 512, 1536
# The SeaArt SDK's gateway code for rate limiting.
RATE_LIMIT_CODE = 1002
MODERATION_MESSAGE = "Content moderation: the prompt or input image was flagged as sensitive"
# What the emulator bills per output image, in usage.cost / unit_price (a sandbox figure,
# not Vtrix's list price; the Vtrix CLI shows cost / quantity / unit_price in usage).
UNIT_PRICE = 0.03

blueprint = Blueprint("vtrix", __name__)


class VtrixError(Exception):
    """A refusal: HTTP status plus the `error` object in one of Vtrix's spellings."""

    def __init__(self, status: int, error: Any, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(error))
        self.status = status
        self.error = error
        self.headers = headers or {}

    def response(self) -> Response:
        """The HTTP answer."""
        answer = jsonify({"error": self.error})
        answer.status_code = self.status
        answer.headers.update(self.headers)
        return answer


def model_error(code: int, message: str) -> VtrixError:
    """A 3014xxx model error as the seed spells it (HTTP 400)."""
    return VtrixError(400, {"code": str(code), "error_message": message})


def spelled_error(code: str, message: str, shape: str) -> Any:
    """A task error in one of the four documented spellings."""
    if shape == "message":
        return {"code": code, "message": message}
    if shape == "numeric":
        return {"code": int(code) if code.isdigit() else code, "message": message}
    if shape == "string":
        return message
    return {"code": code, "error_message": message}


class _VtrixErrorStyle:
    """The gateway's spelling of transport faults (SeaArt SDK shape)."""

    def rate_limited(self, retry_after: float) -> Response:
        error = {"code": RATE_LIMIT_CODE, "message": "rate limited"}
        return VtrixError(429, error, headers=retry_after_header(retry_after)).response()

    def server_error(self, status: int) -> Response:
        error = {"code": 3014099, "message": "Task creation error / Service unavailable"}
        return VtrixError(status, error).response()


def tasks_of(sandbox: Sandbox) -> TaskTable[TimedTask]:
    """Vtrix's task table inside the sandbox."""
    return sandbox.vendor_state[VENDOR]


@blueprint.post("/model/v1/generation")
def create_task() -> Response:
    """Validate a spark_edit_3_0_i2i request and start a task."""
    return answer(VENDOR, "create", _create_task, VtrixError, VtrixError.response)


@blueprint.get("/model/v1/generation/task/<task_id>")
def get_task(task_id: str) -> Response:
    """A task's status, progress, and output once completed."""
    handle = functools.partial(_get_task, task_id=task_id)
    return answer(VENDOR, "poll", handle, VtrixError, VtrixError.response)


def _require_auth(sandbox: Sandbox) -> None:
    if not is_authorized(sandbox.config, request):
        raise VtrixError(401, {"code": 401, "message": "API key missing or invalid"})


def _create_task(sandbox: Sandbox) -> Response:
    _require_auth(sandbox)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise VtrixError(400, {"code": "3014097", "error_message": "Body must be a JSON object"})
    params = model_params(body)
    refuse = functools.partial(model_error, 3014097)
    fault, early = take_fault(sandbox, VENDOR, "create", params, _VtrixErrorStyle(), refuse)
    if early is not None:
        return early

    task = _new_task(sandbox, body, params, fault)
    table = tasks_of(sandbox)
    table.add(task)
    render_ahead(table, sandbox, VENDOR, task)
    sandbox.stats.task_created(VENDOR)
    return jsonify(_task_body(sandbox, task, time.time()))


def _get_task(sandbox: Sandbox, task_id: str) -> Response:
    _require_auth(sandbox)
    refuse = functools.partial(model_error, 3014098)
    _, early = take_fault(sandbox, VENDOR, "poll", None, _VtrixErrorStyle(), refuse)
    if early is not None:
        return early
    task = tasks_of(sandbox).get(task_id)
    if task is None:
        raise VtrixError(404, {"code": 404, "message": f"task {task_id} not found"})
    return jsonify(_task_body(sandbox, task, time.time()))


def model_params(body: dict[str, Any]) -> dict[str, Any]:
    """The model's fields: `input[0].params` when wrapped, else the body itself (flat form).

    A top-level `_sandbox` is kept either way, so faults work with both forms.
    """
    wrapped = body.get("input")
    if not isinstance(wrapped, list):
        return body
    first = wrapped[0] if wrapped else None
    params = first.get("params") if isinstance(first, dict) else None
    if not isinstance(params, dict):
        raise model_error(3014002, "input[0].params must be an object")
    if BODY_FIELD in body:
        return {**params, BODY_FIELD: body[BODY_FIELD]}
    return params


def _new_task(
    sandbox: Sandbox, body: dict[str, Any], params: dict[str, Any], fault: Fault | None
) -> TimedTask:
    if not body.get("model"):
        raise model_error(3014001, "Missing model")
    if body["model"] != MODEL:
        raise model_error(3014001, f"Unknown model {body['model']}")
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise model_error(3014002, "Missing prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise model_error(3014004, f"Invalid prompt length: at most {MAX_PROMPT_CHARS} characters")
    image = _load_image(params.get("image"), sandbox.config.fetch_timeout)
    seed = params.get("seed", -1)
    if not is_int(seed) or not -1 <= seed <= SEED_MAX:
        raise model_error(3014008, "Invalid seed parameter")
    scale = params.get("scale", 0.5)
    if not is_number(scale) or not 0 <= scale <= 1:
        raise model_error(3014009, "Invalid guidance strength: scale must be within [0, 1]")
    if params.get("response_format", "url") not in ("url", "b64_json"):
        raise model_error(3014010, "Invalid response format")
    return TimedTask(
        task_id=_task_id(),
        prompt=prompt,
        seed=seed,
        images=[image],
        size=_output_size(params.get("size"), image),
        outputs=1,
        watermark=False,
        base_url=public_base_url(sandbox.config, request),
        created_at=time.time(),
        latency=sandbox.config.task_latency(),
        fail=planned_failure(
            fault,
            failure=("3014095", "Internal generation error"),
            moderation=("3014095", MODERATION_MESSAGE),
        ),
        fault=fault,
        request={"model": MODEL, "b64": params.get("response_format") == "b64_json"},
    )


def _load_image(value: Any, fetch_timeout: float) -> LoadedImage:
    if isinstance(value, list):
        # "This algorithm requires 1 input image": a one-item list is tolerated, no more.
        if len(value) != 1:
            raise model_error(3014003, "Exactly 1 input image is required")
        value = value[0]
    if not isinstance(value, str) or not value:
        raise model_error(3014003, "Missing image")
    if not value.startswith(("data:", "http://", "https://")):
        value = f"data:image/png;base64,{value}"  # bare Base64, as the doc allows
    [image] = load_edit_inputs(
        [value], allowed_formats=INPUT_FORMATS, timeout=fetch_timeout, refuse=_image_error
    )
    return image


def _image_error(exc: InputImageError, index: int) -> VtrixError:
    code = 3014006 if exc.reason in ("oversized", "dimensions") else 3014005
    return model_error(code, f"Invalid image: {exc}")


def _output_size(value: Any, image: LoadedImage) -> tuple[int, int]:
    if value is None:
        # No size: SeedEdit's own choice for the input's aspect ratio.
        return ark_adaptive_size(image.info.width, image.info.height)
    size = parse_wxh(value)
    if size is None or not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise model_error(3014007, f"Invalid size parameter: WxH, sides {MIN_SIDE}-{MAX_SIDE}")
    return size


def _task_body(sandbox: Sandbox, task: TimedTask, now: float) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": task.task_id,
        "status": "in_progress",
        "model": MODEL,
        "created_at": int(task.created_at),
    }
    if not task.is_done(now):
        body["progress"] = task.progress(now)
        return body
    if task.fail is not None:
        shape = task.fault.text("error_shape", "seed") if task.fault else "seed"
        body["status"] = "failed"
        body["error"] = spelled_error(*task.fail, shape)
        return body
    body["status"] = "completed"
    content = []
    for output in ensure_rendered(sandbox, VENDOR, task):
        item: dict[str, Any] = {"type": "image", "url": output.url, "size": len(output.data)}
        if task.request.get("b64"):
            item["b64_json"] = base64.b64encode(output.data).decode()
        content.append(item)
    body["output"] = [{"content": content}]
    tokens = task.size[0] * task.size[1] // 256
    body["usage"] = {
        "input_tokens": 0,
        "output_tokens": tokens,
        "total_tokens": tokens,
        # Vtrix bills completed tasks only; a failed one carries no usage at all.
        "quantity": len(content),
        "unit_price": UNIT_PRICE,
        "cost": round(UNIT_PRICE * len(content), 6),
    }
    body["metadata"] = {}
    return body


def _task_id() -> str:
    # Vtrix ids look like `d88pmute87128c73e9r0d0`: 20 lowercase letters and digits.
    return secrets.token_hex(10)
