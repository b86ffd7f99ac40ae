"""CometAPI: synchronous multipart `POST /v1/images/edits` (SeedEdit 3.0, Seedream 4.0).

An OpenAI-style relay in front of Volcengine: the answer is Ark's (`data[{url|b64_json}]`,
`usage`), errors come in `{"error": {"code", "message", "type"}}` where `code` is often
empty and upstream refusals travel inside `message`, so the mapping reads both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from editqueue.providers import ark
from editqueue.providers.base import EditRequest, ErrorCode, OutputRef, ProviderError, TaskStatus
from editqueue.providers.http import (
    SyncHttpProvider,
    decided_error,
    error_from_envelope,
    json_object,
    malformed,
    mentions_moderation,
    output_from_item,
    result_items,
    send,
    usage_of,
)

NAME = "cometapi"
EDITS_PATH = "/v1/images/edits"
# Canonical catalog id → CometAPI model id.
MODEL_IDS = {
    "seededit-3.0": "bytedance-seedEdit-3.0-i2i",
    "seedream-4.0-edit": "seedream-4-0-250828",
}
# Statuses of a gateway that gave up waiting (504, and Cloudflare's 524).
_TIMEOUT_STATUSES = frozenset({504, 524})
_FILE_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

FormFile = tuple[str, tuple[str, bytes, str]]


class CometApiProvider(SyncHttpProvider):
    """Adapter for CometAPI's OpenAI-compatible image edit endpoint."""

    name = NAME

    def submit(self, request: EditRequest) -> TaskStatus:
        """Run the edit; the answer already holds the outputs."""
        fields, files = build_form(request)
        response = send(self._client, NAME, "POST", EDITS_PATH, data=fields, files=files)
        if response.status_code != 200:
            # Not in CometAPI's envelope: a proxy's page or a redirect, mapped by status.
            raise error_from_envelope(NAME, response, map_error)
        return parse_edit(response)


def build_form(request: EditRequest) -> tuple[dict[str, str], list[FormFile]]:
    """The multipart form: text fields, then one `image` part per input image.

    `provider_options` are merged into the fields last (objects sent as JSON text).
    """
    fields = ark.seed_fields(request, NAME, MODEL_IDS)
    if request.model != "seededit-3.0" and request.n > 1:
        # Not on CometAPI's page; `n` is the OpenAI edit field its relay understands.
        fields["n"] = request.n
    fields.update(request.provider_options)
    files = [
        ("image", (f"image-{index}.{_FILE_EXTENSIONS.get(image.content_type, 'png')}",
                   image.data, image.content_type))
        for index, image in enumerate(request.images)
    ]  # fmt: skip
    return {name: _form_text(value) for name, value in fields.items()}, files


def parse_edit(response: httpx.Response) -> TaskStatus:
    """Outputs and usage from a 200 answer; unreadable answers are retryable errors."""
    body = json_object(NAME, response)
    if isinstance(body.get("error"), dict) and body["error"].get("message"):
        raise map_error(response.status_code, body["error"], None)
    outputs: list[OutputRef] = []
    for item in result_items(NAME, body, response.status_code):
        output = output_from_item(NAME, item)
        if output is None:
            raise malformed(NAME, "data item has neither url nor b64_json")
        outputs.append(output)
    return TaskStatus(state="succeeded", outputs=outputs, usage=usage_of(body))


def map_error(status: int, envelope: Mapping[str, Any], retry_after: float | None) -> ProviderError:
    """CometAPI's `{"code", "message", "type"}` to the public vocabulary.

    `code` is often empty, so upstream refusals (moderation, bad image) are recognised by
    the upstream code or wording inside `message`.
    """
    vendor_code = str(envelope.get("code") or "")
    message = str(envelope.get("message") or f"cometapi answered HTTP {status}")
    text = f"{vendor_code} {message}"
    code: ErrorCode | None = None
    retryable = False
    if status == 429:
        code, retryable = "rate_limited", True
    elif mentions_moderation(text):
        code = "content_rejected"
    elif vendor_code == "invalid_request":
        # CometAPI answers malformed requests with HTTP 500 and this code: do not retry.
        code = "invalid_request"
    elif status in _TIMEOUT_STATUSES:
        code, retryable = "timeout", True
    elif status >= 500:
        code, retryable = "provider_unavailable", True
    elif status in (400, 413, 422):
        code = "invalid_image" if "image" in text.lower() else "invalid_request"
    return decided_error(NAME, code, message, status, retryable, vendor_code or None, retry_after)


def _form_text(value: Any) -> str:
    """A form field's text: booleans as `true`/`false`, objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
