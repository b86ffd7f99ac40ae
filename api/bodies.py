"""Reading request bodies: one place that turns hostile JSON into a clear 4xx."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from api.errors import ApiProblem


def json_object(*, empty_is_object: bool = False) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object, and its raw bytes (for idempotency hashing).

    Malformed JSON, invalid UTF-8 and absurdly deep nesting are a 400; any JSON value
    other than an object is a 422. `empty_is_object` reads an empty body as `{}`.
    """
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw or (b"{}" if empty_is_object else raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiProblem(400, "the body is not valid JSON", code="malformed_json") from None
    if not isinstance(body, dict):
        raise ApiProblem(422, "the body must be a JSON object", code="invalid_request")
    return body, raw


def idempotency_key() -> str | None:
    """The `Idempotency-Key` header, if any; 422 unless it is 1–255 characters."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise ApiProblem(
            422,
            "Idempotency-Key must be 1–255 characters",
            errors=[{"field": "Idempotency-Key", "message": "1–255 characters"}],
        )
    return key
