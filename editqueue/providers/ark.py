"""Volcengine Ark: synchronous `POST /api/v3/images/generations` (SeedEdit 3.0, Seedream 4.0).

The answer carries the finished images (links valid 24 h, or inline base64), so there is
nothing to poll and no callback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from editqueue.providers.base import (
    EditRequest,
    ErrorCode,
    OutputRef,
    ProviderError,
    RequestRejected,
    TaskStatus,
)
from editqueue.providers.http import (
    SyncHttpProvider,
    decided_error,
    decode_inline,
    error_from_envelope,
    json_object,
    malformed,
    result_items,
    send,
    served_model,
    usage_of,
)

NAME = "ark"
GENERATIONS_PATH = "/api/v3/images/generations"
# Canonical catalog id → Ark model id.
MODEL_IDS = {
    "seededit-3.0": "doubao-seededit-3-0-i2i-250628",
    "seedream-4.0-edit": "doubao-seedream-4-0-250828",
}
SEEDREAM_RESOLUTIONS = {"1K": 1024, "2K": 2048, "4K": 4096}
SEEDREAM_DEFAULT_RESOLUTION = "2K"

_IMAGE_ERROR_CODES = frozenset(
    {"InvalidParameter.OversizedImage", "InvalidParameter.UnsupportedImageFormat"}
)
# Our configuration is wrong (closed endpoint, model not enabled): retrying cannot help.
_SETUP_ERROR_PREFIXES = ("InvalidEndpoint", "ModelNotOpen", "AccountOverdue", "AccessDenied")


class ArkProvider(SyncHttpProvider):
    """Adapter for Ark's synchronous image generation endpoint."""

    name = NAME

    def submit(self, request: EditRequest) -> TaskStatus:
        """Run the edit; the answer already holds the outputs."""
        body = build_request_body(request)
        response = send(self._client, NAME, "POST", GENERATIONS_PATH, json=body)
        if response.status_code != 200:
            raise error_from_envelope(NAME, response, map_error)
        return parse_generation(response)


def build_request_body(request: EditRequest) -> dict[str, Any]:
    """The JSON body for `images/generations`, `provider_options` merged in last."""
    body = seed_fields(request, NAME, MODEL_IDS)
    images = [image.data_url() for image in request.images]
    if request.model == "seededit-3.0":
        body["image"] = images[0]
    else:
        body["image"] = images[0] if len(images) == 1 else images
        if request.n > 1:
            body["sequential_image_generation"] = "auto"
            body["sequential_image_generation_options"] = {"max_images": request.n}
    body.update(request.provider_options)
    return body


def seed_fields(
    request: EditRequest, provider: str, model_ids: Mapping[str, str]
) -> dict[str, Any]:
    """The fields Ark and the relays that resell its models name alike: model, prompt,
    response_format, watermark, size, guidance_scale (SeedEdit) and seed."""
    fields: dict[str, Any] = {
        "model": served_model(provider, model_ids, request),
        "prompt": request.prompt,
        "response_format": "url",
        "watermark": request.watermark,
    }
    if request.model == "seededit-3.0":
        fields["size"] = "adaptive"
        if request.guidance_scale is not None:
            fields["guidance_scale"] = request.guidance_scale
    else:
        fields["size"] = seedream_size(request, provider)
    if request.seed is not None:
        fields["seed"] = request.seed
    return fields


def seedream_size(request: EditRequest, provider: str = NAME) -> str:
    """`WxH` for Seedream: the explicit size, else aspect ratio × resolution (pixel budget).

    `provider` is the vendor blamed for a bad request: the relays size as Ark does.
    """
    if request.size and request.size != "adaptive":
        return request.size
    side = SEEDREAM_RESOLUTIONS.get(request.resolution or SEEDREAM_DEFAULT_RESOLUTION)
    if side is None:
        raise RequestRejected(
            "invalid_request", f"unknown resolution {request.resolution}", provider=provider
        )
    if request.aspect_ratio:
        ratio_w, _, ratio_h = request.aspect_ratio.partition(":")
        try:
            ratio = float(ratio_w) / float(ratio_h)
        except (ValueError, ZeroDivisionError):
            raise RequestRejected(
                "invalid_request", f"bad aspect ratio {request.aspect_ratio}", provider=provider
            ) from None
    else:
        first = request.images[0]
        ratio = first.width / first.height
    # Same pixel count as side × side; rounded down to a multiple of 16 to stay in bounds.
    width = math.sqrt(side * side * ratio)
    return f"{_floor16(width)}x{_floor16(width / ratio)}"


def parse_generation(response: httpx.Response) -> TaskStatus:
    """Outputs and usage from a 200 answer; unreadable answers are retryable errors."""
    body = json_object(NAME, response)
    if isinstance(body.get("error"), dict) and body["error"].get("code"):
        raise map_error(response.status_code, body["error"], None)
    outputs: list[OutputRef] = []
    item_errors: list[dict[str, Any]] = []
    for item in result_items(NAME, body, response.status_code):
        if not isinstance(item, dict):
            raise malformed(NAME, "data item is not an object")
        if isinstance(item.get("url"), str) and item["url"]:
            outputs.append(OutputRef(url=item["url"]))
        elif isinstance(item.get("b64_json"), str) and item["b64_json"]:
            outputs.append(decode_inline(NAME, item["b64_json"]))
        elif isinstance(item.get("error"), dict):
            # Seedream group generation reports failed images item by item.
            item_errors.append(item["error"])
        else:
            raise malformed(NAME, "data item has neither url nor b64_json")
    if not outputs:
        raise map_error(response.status_code, item_errors[0], None)
    return TaskStatus(state="succeeded", outputs=outputs, usage=usage_of(body))


def map_error(status: int, envelope: Mapping[str, Any], retry_after: float | None) -> ProviderError:
    """Ark's `{"code", "message", "param", "type"}` to public codes (docs/vendors/ark.md)."""
    vendor_code = str(envelope.get("code") or "")
    message = str(envelope.get("message") or vendor_code or f"ark answered HTTP {status}")
    param = envelope.get("param")
    code: ErrorCode | None = None
    retryable = False
    if "SensitiveContent" in vendor_code or vendor_code.endswith("RiskDetection"):
        code = "content_rejected"
    elif vendor_code == "ContentSecurityDetectionError":
        # The moderation service itself failed; the content was not judged.
        code, retryable = "provider_unavailable", True
    elif vendor_code in _IMAGE_ERROR_CODES or (
        vendor_code.startswith("InvalidParameter") and param == "image"
    ):
        code = "invalid_image"
    elif vendor_code.startswith(("InvalidParameter", "MissingParameter")):
        code = "invalid_request"
    elif vendor_code.startswith(_SETUP_ERROR_PREFIXES):
        code = "provider_error"
    return decided_error(NAME, code, message, status, retryable, vendor_code or None, retry_after)


def _floor16(value: float) -> int:
    return max(16, int(value) // 16 * 16)
