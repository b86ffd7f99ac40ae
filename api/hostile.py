"""Values no store can hold — NUL, lone surrogates, NaN and ±Infinity — refused up front.

PostgreSQL text cannot hold NUL, UTF-8 cannot encode a lone surrogate, and JSON (so JSONB)
has no NaN or Infinity. Such a value reaching the database fails there, after other writes
may have happened, and used to be reported as an outage. Every way into the API passes
through here first — query strings, path parameters,
JSON and multipart bodies (via the `check_values` hook), each a 4xx naming the field.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

from flask import g, request

from api.errors import ApiProblem
from api.http_limits import MAX_URL_BYTES, uri_too_long_detail

# Python's json combines a valid surrogate pair into one character, so any surrogate left
# in a decoded string is a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class NonFinite(float):
    """A NaN or ±Infinity read from JSON, kept recognisable until it is reported."""

    token: str

    def __new__(cls, token: str) -> NonFinite:
        value = super().__new__(cls, float(token.replace("Infinity", "inf")))
        value.token = token
        return value


def _constant(token: str) -> NonFinite:
    return NonFinite(token)


def _float(text: str) -> float:
    value = float(text)
    # 1e400 is valid JSON, but only as infinity in a float, which JSONB cannot hold.
    return value if math.isfinite(value) else NonFinite(text)


def loads(raw: bytes | str) -> Any:
    """json.loads, but NaN, ±Infinity and overflowing numbers come back as NonFinite."""
    return json.loads(raw, parse_constant=_constant, parse_float=_float)


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(match.group()):04x}), which is not valid Unicode"


def printable(name: str) -> str:
    """`name` with NUL and surrogates escaped, fit to name a field in an answer."""
    return json.dumps(name)[1:-1] if _UNSTORABLE.search(name) else name


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = printable(key)
    return f"{path}.{key}" if path else key


def _children(node: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [(_join(path, key), value) for key, value in node.items()]
    if isinstance(node, list):
        return [(_join(path, index), value) for index, value in enumerate(node)]
    return []


def _node_problem(node: Any, key_problem: str | None) -> str | None:
    if key_problem:
        return f"the key {key_problem}"
    if isinstance(node, NonFinite):
        return f"{node.token} is not a JSON number"
    if isinstance(node, str):
        return text_problem(node)
    return None


def find_problems(document: Any, prefix: str = "", limit: int = 10) -> list[dict[str, str]]:
    """Up to `limit` `{"field", "message"}` entries for unstorable values in a JSON document.

    Iterative, so a document as deep as json.loads allows cannot overflow the stack here.
    """
    found: list[dict[str, str]] = []
    stack: list[tuple[str, Any, str | None]] = [(prefix, document, None)]
    while stack and len(found) < limit:
        path, node, key_problem = stack.pop()
        message = _node_problem(node, key_problem)
        if message:
            found.append({"field": path or "body", "message": message})
        children = _children(node, path)
        keys = list(node) if isinstance(node, dict) else [None] * len(children)
        for (child_path, child), key in reversed(list(zip(children, keys, strict=True))):
            problem = text_problem(key) if isinstance(key, str) else None
            stack.append((child_path, child, problem))
    return found


def reject(errors: list[dict[str, str]], status: int = 422) -> None:
    """Raise the 4xx (422 unless told) for `errors` (from find_problems), if there are any."""
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ApiProblem(status, detail, errors=errors)


# -- the request ------------------------------------------------------------------------------

# Routes that read their body as JSON whatever its content type says (vendor callbacks),
# and answer a body they cannot use with a 400 rather than a 422.
RAW_JSON_ENDPOINTS = {"callbacks.receive"}
_UNREAD = object()


def request_json() -> Any:
    """The request body as JSON, parsed and checked once per request.

    Raises ValueError (UnicodeDecodeError among them) or RecursionError when the body is
    not JSON, and the 422 naming the field when it holds a value nothing can store.
    """
    document = g.get("strict_json", _UNREAD)
    if document is _UNREAD:
        document = loads(request.get_data(cache=True))
        status = 400 if request.endpoint in RAW_JSON_ENDPOINTS else 422
        reject(find_problems(document), status)
        g.strict_json = document
    return document


def _url_bytes() -> int:
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return len(raw)
    query = environ.get("QUERY_STRING", "")
    return len(environ.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)


def _check_query() -> None:
    errors = [p for name, values in request.args.lists() if (p := _first_problem(name, values))]
    reject(errors)


def _check_path() -> None:
    # A path segment that cannot be stored cannot name anything stored: as unknown as any
    # other id, so the same 404.
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and text_problem(value):
            raise ApiProblem(
                404,
                f"no such {name.removesuffix('_id')}",
                errors=[{"field": name, "message": text_problem(value) or ""}],
            )


def _first_problem(name: str, values: list[str]) -> dict[str, str] | None:
    """The problem with a query or form field's name or values, if any."""
    for value in [name, *values]:
        message = text_problem(value)
        if message:
            what = "its name" if value is name else "the value"
            return {"field": printable(name), "message": f"{what} {message}"}
    return None


def _check_form() -> None:
    if request.mimetype != "multipart/form-data":
        return
    fields = list(request.form.lists())
    fields += [(name, [upload.filename or ""]) for name, upload in request.files.items(multi=True)]
    reject([p for name, values in fields if (p := _first_problem(name, values))])


def _check_json_body() -> None:
    if not (request.is_json or request.endpoint in RAW_JSON_ENDPOINTS):
        return
    if not request.get_data(cache=True):
        return
    # Not JSON at all: the route answers that in its own words.
    with contextlib.suppress(ValueError, RecursionError):
        request_json()


def check_url_length() -> None:
    """before_request, ahead of auth: a 414 problem+json for a URL over MAX_URL_BYTES."""
    # gevent refuses request lines over 8 KiB itself (see api/gunicorn_handler.py);
    # this makes the documented limit the same for every server the app runs under.
    if _url_bytes() > MAX_URL_BYTES:
        raise ApiProblem(414, uri_too_long_detail(), code="uri_too_long", title="URI too long")


def check_values() -> None:
    """before_request, after auth: 4xx for unstorable path, query and body values."""
    _check_path()
    _check_query()
    _check_json_body()
    _check_form()
