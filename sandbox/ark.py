"""Volcengine Ark emulator: synchronous `images/generations` for SeedEdit 3.0 and Seedream 4.0.

Mounted under `/ark`: `POST /ark/api/v3/images/generations` (Ark's own path) and
`POST /ark/v1/images/generations` (the reseller path of the seed page). Errors use Ark's
envelope `{"error": {"code", "message", "param", "type"}}` with the documented HTTP status.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.faults import Fault
from sandbox.generations import Edit, render_answer
from sandbox.imaging import ark_adaptive_size
from sandbox.inputs import InputImageError, LoadedImage, load_edit_inputs
from sandbox.state import Sandbox
from sandbox.vendor import (
    SEED_MAX,
    answer,
    is_authorized,
    is_int,
    is_number,
    retry_after_header,
    seedream_size,
    take_fault,
)

VENDOR = "ark"
SEEDEDIT_MODELS = frozenset({"doubao-seededit-3-0-i2i-250628", "seededit-3-0-i2i-250628"})
SEEDREAM_MODELS = frozenset({"doubao-seedream-4-0-250828", "seedream-4-0-250828"})
SEEDEDIT_FORMATS = frozenset({"JPEG", "PNG"})
SEEDREAM_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
SEEDREAM_MAX_REFERENCES = 10
SEEDREAM_MAX_OUTPUTS = 15
SEEDREAM_DEFAULT_SIZE = "2048x2048"

blueprint = Blueprint("ark", __name__)


class ArkError(Exception):
    """An answer in Ark's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str = "",
        error_type: str = "BadRequest",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type
        self.headers = headers or {}

    def response(self) -> Response:
        """The HTTP answer, with a request id appended to the message as Ark does."""
        request_id = f"0217{int(time.time() * 1000)}{secrets.token_hex(8)}"
        body = {
            "error": {
                "code": self.code,
                "message": f"{self.message} Request id: {request_id}",
                "param": self.param,
                "type": self.error_type,
            }
        }
        answer = jsonify(body)
        answer.status_code = self.status
        answer.headers.update(self.headers)
        return answer


class _ArkErrorStyle:
    """Ark's spelling of the transport faults."""

    def rate_limited(self, retry_after: float) -> Response:
        return ArkError(
            429,
            "RateLimitExceeded.EndpointRPMExceeded",
            "The request has exceeded the RPM limit of the endpoint. Please try again later.",
            error_type="TooManyRequests",
            headers=retry_after_header(retry_after),
        ).response()

    def server_error(self, status: int) -> Response:
        if status == 503:
            code, message = "ServerOverloaded", "The service is overloaded, please retry later."
        else:
            code, message = "InternalServiceError", "The service encountered an unexpected error."
        return ArkError(status, code, message, error_type="InternalServerError").response()


@blueprint.post("/api/v3/images/generations")
@blueprint.post("/v1/images/generations")
def generate() -> Response:
    """Validate, edit and answer synchronously with URLs or inline base64."""
    return answer(VENDOR, "create", _generate, ArkError, ArkError.response)


def _generate(sandbox: Sandbox) -> Response:
    if not is_authorized(sandbox.config, request):
        raise ArkError(
            401,
            "AuthenticationError",
            "The API key in the request is missing or invalid.",
            error_type="Unauthorized",
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ArkError(400, "InvalidParameter", "The request body must be a JSON object.")
    fault, early = take_fault(sandbox, VENDOR, "create", body, _ArkErrorStyle(), _bad_fault)
    if early is not None:
        return early

    edit = _validate(body, sandbox.config.fetch_timeout)
    _raise_for_outcome_fault(fault)
    time.sleep(sandbox.config.ark_latency)
    return jsonify(render_answer(sandbox, VENDOR, edit, item_size=edit.model in SEEDREAM_MODELS))


def _bad_fault(reason: str) -> ArkError:
    """An unusable `_sandbox` fault request, refused like any bad parameter."""
    return ArkError(400, "InvalidParameter", reason, param="_sandbox")


def _raise_for_outcome_fault(fault: Fault | None) -> None:
    if fault is None:
        return
    if fault.kind == "moderation":
        raise ArkError(
            400,
            fault.text("code", "SensitiveContentDetected"),
            "The request failed because the input text or image may contain sensitive content.",
        )
    if fault.kind == "task_fail":
        raise ArkError(
            500,
            "InternalServiceError",
            "The service encountered an unexpected internal error.",
            error_type="InternalServerError",
        )


def _validate(body: dict[str, Any], fetch_timeout: float) -> Edit:
    model = body.get("model")
    if not model:
        raise ArkError(400, "MissingParameter", "The request is missing `model`.", param="model")
    if model not in SEEDEDIT_MODELS | SEEDREAM_MODELS:
        raise ArkError(
            404,
            "InvalidEndpointOrModel.NotFound",
            f"The model or endpoint {model} does not exist or you do not have access to it.",
            error_type="NotFound",
        )
    seedream = model in SEEDREAM_MODELS
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ArkError(400, "MissingParameter", "The request is missing `prompt`.", param="prompt")
    images = _load_images(body.get("image"), seedream, fetch_timeout)

    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise _invalid("response_format")
    seed = body.get("seed", -1)
    if not is_int(seed) or not -1 <= seed <= SEED_MAX:
        raise _invalid("seed")
    guidance = body.get("guidance_scale", 5.5)
    if not is_number(guidance) or not 1 <= guidance <= 10:
        raise _invalid("guidance_scale")
    watermark = body.get("watermark", True)
    if not isinstance(watermark, bool):
        raise _invalid("watermark")

    first = images[0].info
    if seedream:
        size = seedream_size(body.get("size", SEEDREAM_DEFAULT_SIZE), first.width / first.height)
        if size is None:
            raise _invalid("size")
        outputs = _seedream_outputs(body, len(images))
    else:
        if body.get("size", "adaptive") != "adaptive":
            raise _invalid("size")
        size = ark_adaptive_size(first.width, first.height)
        outputs = 1
    return Edit(model, prompt, images, size, outputs, seed, watermark, response_format)


def _load_images(value: Any, seedream: bool, fetch_timeout: float) -> list[LoadedImage]:
    if value is None or value == "" or value == []:
        raise ArkError(400, "MissingParameter", "The request is missing `image`.", param="image")
    refs = value if seedream and isinstance(value, list) else [value]
    if len(refs) > SEEDREAM_MAX_REFERENCES or not all(isinstance(r, str) for r in refs):
        raise _invalid("image")
    formats = SEEDREAM_FORMATS if seedream else SEEDEDIT_FORMATS
    return load_edit_inputs(
        refs, allowed_formats=formats, timeout=fetch_timeout, refuse=_image_error
    )


def _image_error(exc: InputImageError, index: int) -> ArkError:
    if exc.reason == "oversized":
        return ArkError(400, "InvalidParameter.OversizedImage", str(exc), param="image")
    if exc.reason == "format":
        return ArkError(400, "InvalidParameter.UnsupportedImageFormat", str(exc), param="image")
    return ArkError(
        400,
        "InvalidParameter",
        f"The parameter `image` specified in the request is not valid: {exc}.",
        param="image",
    )


def _seedream_outputs(body: dict[str, Any], references: int) -> int:
    if body.get("sequential_image_generation", "disabled") != "auto":
        return 1
    options = body.get("sequential_image_generation_options") or {}
    wanted = options.get("max_images", SEEDREAM_MAX_OUTPUTS) if isinstance(options, dict) else 0
    if not is_int(wanted) or not 1 <= wanted <= SEEDREAM_MAX_OUTPUTS:
        raise _invalid("sequential_image_generation_options.max_images")
    # Ark caps references plus outputs at 15 images.
    return max(1, min(wanted, SEEDREAM_MAX_OUTPUTS - references))


def _invalid(param: str) -> ArkError:
    return ArkError(
        400,
        "InvalidParameter",
        f"The parameter `{param}` specified in the request is not valid.",
        param=param,
    )
