"""RFC 9457 problem+json for every error, and no stack trace ever leaves the process."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from editqueue import logs
from editqueue.errors import EditqueueError
from editqueue.infra.storage import StorageError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://editqueue.dev/problems/"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiProblem(Exception):
    """An HTTP-level problem raised by the API layer itself."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _HTTP_CODES.get(status, "error")
        self.title = title or self.code.replace("_", " ").capitalize()
        self.errors = errors or []
        self.headers = headers or {}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    """A problem+json response (``extensions``: extra members, RFC 9457 §3.2)."""
    body = {
        **(extensions or {}),
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
    }
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    """A pydantic error location as a field path: ("images", 0) → "images[0]"."""
    path = prefix.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """The `errors` list of a 422 for a pydantic validation failure."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field_path(tuple(err["loc"]), prefix), "message": message})
    return out


def _connection_lost(exc: DBAPIError) -> bool:
    """Whether a database error means the database is out of reach (the only 503)."""
    return isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated


def _db_message(exc: Exception) -> str:
    """The driver's message, without the SQL statement and its parameters."""
    original = getattr(exc, "orig", None) or exc
    return f"{type(original).__name__}: {str(original).splitlines()[0][:200]}"


def _unavailable(code: str, what: str, backend: str) -> Response:
    """503 for a backend that is down: the client may retry in a few seconds."""
    detail = f"{backend} is unreachable; try again shortly"
    return problem(503, code, f"{what} unavailable", detail, headers={"Retry-After": "5"})


def register(app: Flask) -> None:
    """Install the error handlers."""

    @app.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        return problem(exc.status, exc.code, exc.title, exc.detail, exc.errors, exc.headers)

    @app.errorhandler(EditqueueError)
    def _domain(exc: EditqueueError) -> Response:
        return problem(
            exc.status, exc.code, exc.title, exc.detail, exc.errors, extensions=exc.extensions
        )

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "invalid_request", "Invalid request", detail, errors)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "error")
        detail = exc.description or exc.name
        if status == 413:
            detail = "the request body is larger than this server accepts"
        response = problem(status, code, exc.name, detail)
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(DataError)
    @app.errorhandler(UnicodeEncodeError)
    def _unstorable(exc: Exception) -> Response:
        # The last line of defence behind api.hostile: a value the database or its driver
        # cannot hold is the client's, not an outage. The request's transaction is rolled
        # back at teardown (api.state.close_db), so nothing of it is written.
        log.warning("api.request.unstorable", extra=logs.fields(error=_db_message(exc)))
        return problem(
            422,
            "invalid_request",
            "Invalid request",
            "a value in the request cannot be stored (NUL, invalid Unicode or out of range)",
        )

    @app.errorhandler(DBAPIError)
    def _database(exc: DBAPIError) -> Response:
        if not _connection_lost(exc):
            log.error("api.database.error", exc_info=exc)
            return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
        log.warning("api.database.unavailable", extra=logs.fields(error=type(exc).__name__))
        return _unavailable("service_unavailable", "Service", "the database")

    @app.errorhandler(StorageError)
    def _storage(exc: StorageError) -> Response:
        log.warning("api.storage.unavailable", extra=logs.fields(error=str(exc)))
        return _unavailable("storage_unavailable", "Storage", "the result store")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("api.request.unhandled")
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
