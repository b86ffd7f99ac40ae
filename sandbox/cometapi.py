"""CometAPI emulator: the OpenAI-style multipart `POST /v1/images/edits`, synchronous.

Mounted under `/cometapi`: `POST /cometapi/v1/images/edits` with an `image` file part
(repeated for Seedream's reference images) and form fields. CometAPI relays to
Volcengine, so the answer is Ark's (`model`, `created`, `data[{url|b64_json}]`, `usage`)
and the input rules are Ark's.

Errors use CometAPI's envelope `{"error": {"code", "message", "type": "comet_api_error"}}`
with the request id inside `message`. CometAPI's own checks leave `code` empty, as the
vendor often does; errors relayed from the upstream keep the upstream's code (e.g.
`InvalidParameter`, `SensitiveContentDetected`). A `task_fail` fault may name a `code`
(CometAPI answers malformed requests with HTTP 500 and code `invalid_request`).
Form fields are strings; faults come from the header or a `_sandbox` field holding JSON.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import FileStorage

from sandbox.faults import BODY_FIELD, Fault
from sandbox.generations import Edit, render_answer
from sandbox.imaging import ark_adaptive_size
from sandbox.inputs import InputImageError, LoadedImage, load_edit_inputs
from sandbox.state import Sandbox
from sandbox.vendor import (
    SEED_MAX,
    answer,
    is_authorized,
    retry_after_header,
    seedream_size,
    take_fault,
)

VENDOR = "cometapi"
SEEDEDIT_MODELS = frozenset({"bytedance-seedEdit-3.0-i2i", "doubao-seededit-3-0-i2i-250628"})
SEEDREAM_MODELS = frozenset({"seedream-4-0-250828"})
INPUT_FORMATS = frozenset({"JPEG", "PNG"})
SEEDREAM_MAX_REFERENCES = 10
SEEDREAM_MAX_OUTPUTS = 15
SEEDREAM_DEFAULT_SIZE = "2048x2048"
ERROR_TYPE = "comet_api_error"

blueprint = Blueprint("cometapi", __name__)


class CometError(Exception):
    """An answer in CometAPI's error envelope."""

    def __init__(
        self, status: int, message: str, *, code: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        """The HTTP answer; the request id rides inside the message, as CometAPI does."""
        request_id = f"{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(8)}"
        error = {
            "code": self.code,
            "message": f"{self.message} (request id: {request_id})",
            "type": ERROR_TYPE,
        }
        answer = jsonify({"error": error})
        answer.status_code = self.status
        answer.headers.update(self.headers)
        return answer


class _CometErrorStyle:
    """CometAPI's spelling of the transport faults."""

    def rate_limited(self, retry_after: float) -> Response:
        message = "The upstream load is saturated, please try again later"
        return CometError(429, message, headers=retry_after_header(retry_after)).response()

    def server_error(self, status: int) -> Response:
        return CometError(status, "upstream error: do request failed").response()


@blueprint.post("/v1/images/edits")
def edit() -> Response:
    """Validate the multipart form, edit and answer synchronously."""
    return answer(VENDOR, "create", _edit, CometError, CometError.response)


def _edit(sandbox: Sandbox) -> Response:
    if not is_authorized(sandbox.config, request):
        raise CometError(401, "Invalid token")
    if request.mimetype != "multipart/form-data":
        raise CometError(400, "Content-Type must be multipart/form-data")
    refuse = functools.partial(CometError, 400)
    fault, early = take_fault(sandbox, VENDOR, "create", _fault_field(), _CometErrorStyle(), refuse)
    if early is not None:
        return early

    edit = _validate(sandbox.config.fetch_timeout)
    _raise_for_outcome_fault(fault)
    # CometAPI relays to Ark: the same synchronous edit time.
    time.sleep(sandbox.config.ark_latency)
    return jsonify(render_answer(sandbox, VENDOR, edit))


def _fault_field() -> dict[str, Any] | None:
    """The `_sandbox` form field, decoded, in the shape `choose_fault` reads."""
    raw = request.form.get(BODY_FIELD)
    if raw is None:
        return None
    try:
        return {BODY_FIELD: json.loads(raw)}
    except ValueError:
        raise CometError(400, f"{BODY_FIELD} must be JSON") from None


def _raise_for_outcome_fault(fault: Fault | None) -> None:
    if fault is None:
        return
    if fault.kind == "moderation":
        raise CometError(
            400,
            "The request failed because the input text or image may contain sensitive content.",
            code=fault.text("code", "SensitiveContentDetected"),
        )
    if fault.kind == "task_fail":
        # `code=invalid_request` acts out CometAPI's 500 for a malformed request.
        raise CometError(500, "upstream error: InternalServiceError", code=fault.text("code", ""))


def _validate(fetch_timeout: float) -> Edit:
    form = request.form
    model = form.get("model", "")
    if not model:
        raise CometError(400, "model name is required")
    if model not in SEEDEDIT_MODELS | SEEDREAM_MODELS:
        raise CometError(400, f"model {model} is not supported by this endpoint")
    seedream = model in SEEDREAM_MODELS
    prompt = form.get("prompt", "")
    if not prompt.strip():
        raise CometError(400, "prompt is required")
    images = _load_images(seedream, fetch_timeout)

    response_format = form.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise _invalid("response_format")
    seed = _form_number("seed", int, -1)
    if not -1 <= seed <= SEED_MAX:
        raise _invalid("seed")
    guidance = _form_number("guidance_scale", float, 5.5)
    if not 1 <= guidance <= 10:
        raise _invalid("guidance_scale")
    watermark = form.get("watermark", "true").lower()
    if watermark not in ("true", "false"):
        raise _invalid("watermark")
    outputs = _form_number("n", int, 1)

    first = images[0].info
    if seedream:
        size = seedream_size(form.get("size", SEEDREAM_DEFAULT_SIZE), first.width / first.height)
        if size is None:
            raise _invalid("size")
        if not 1 <= outputs <= SEEDREAM_MAX_OUTPUTS:
            raise _invalid("n")
    else:
        if form.get("size", "adaptive") != "adaptive":
            raise _invalid("size")
        if outputs != 1:
            raise _invalid("n")
        size = ark_adaptive_size(first.width, first.height)
    return Edit(model, prompt, images, size, outputs, seed, watermark == "true", response_format)


def _load_images(seedream: bool, fetch_timeout: float) -> list[LoadedImage]:
    parts: list[FileStorage] = request.files.getlist("image") + request.files.getlist("image[]")
    if not parts:
        raise CometError(400, "image is required")
    if len(parts) > (SEEDREAM_MAX_REFERENCES if seedream else 1):
        raise _invalid("image")
    # The shared loader reads data URLs; a file part is the same bytes without the text.
    refs = [f"data:image/png;base64,{base64.b64encode(part.read()).decode()}" for part in parts]
    return load_edit_inputs(
        refs, allowed_formats=INPUT_FORMATS, timeout=fetch_timeout, refuse=_image_error
    )


def _image_error(exc: InputImageError, index: int) -> CometError:
    """The upstream's image refusal, relayed with its code."""
    code = {
        "oversized": "InvalidParameter.OversizedImage",
        "format": "InvalidParameter.UnsupportedImageFormat",
    }.get(exc.reason, "InvalidParameter")
    message = f"The parameter `image` specified in the request is not valid: {exc}."
    return CometError(400, message, code=code)


def _form_number(name: str, kind: type[int] | type[float], default: int | float) -> Any:
    raw = request.form.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise _invalid(name) from None


def _invalid(param: str) -> CometError:
    """A parameter refusal relayed from the upstream."""
    message = f"The parameter `{param}` specified in the request is not valid."
    return CometError(400, message, code="InvalidParameter")
