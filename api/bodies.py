"""Reading request bodies: one place that turns hostile JSON into a clear 4xx."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from api import hostile
from api.errors import ApiProblem


def json_object(*, empty_is_object: bool = False) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object, and its raw bytes (for idempotency hashing).

    Malformed JSON, invalid UTF-8 and absurdly deep nesting are a 400; any JSON value
    other than an object is a 422, and so is a value nothing can store (NUL, a lone
    surrogate, NaN, ±Infinity), naming its field. `empty_is_object` reads an empty body
    as `{}`.
    """
    raw = request.get_data(cache=True)
    try:
        body = hostile.request_json() if raw or not empty_is_object else {}
    except (ValueError, RecursionError):
        raise ApiProblem(400, "the body is not valid JSON", code="malformed_json") from None
    if not isinstance(body, dict):
        raise ApiProblem(422, "the body must be a JSON object", code="invalid_request")
    return body, raw


def json_field(text: str, field: str) -> Any:
    """A form field's text decoded as JSON; ValueError if it is not JSON, 422 if unstorable.

    For multipart fields carrying JSON values (`provider_options={"a": NaN}` must be
    refused like the same JSON body).
    """
    value = hostile.loads(text)
    hostile.reject(hostile.find_problems(value, prefix=field))
    return value


def idempotency_key() -> str | None:
    """The `Idempotency-Key` header, if any; 422 unless it is 1–255 characters."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not 1 <= len(key) <= 255 or hostile.text_problem(key)):
        raise ApiProblem(
            422,
            "Idempotency-Key must be 1–255 storable characters",
            errors=[{"field": "Idempotency-Key", "message": "1–255 characters, no NUL"}],
        )
    return key


def check_unsized_body() -> None:
    """before_request: 413 for a body of unknown length (chunked) over MAX_CONTENT_LENGTH.

    Werkzeug stops reading such a body at the limit and hands over what it read, so an
    oversized chunked body would otherwise look merely truncated (a 400, or worse, a
    shorter value accepted). One byte more on the wire past the limit tells them apart.
    """
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return
    data = request.get_data(cache=True)
    if len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
