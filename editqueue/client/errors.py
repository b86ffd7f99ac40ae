"""The SDK's exception tree: one class per problem type the API answers with.

`APIError` carries the RFC 9457 fields (`status`, `code`, `detail`, `errors`); the class is
chosen from the problem's `code` first (`job_finished`, `idempotency_key_reused`, …), then
from the HTTP status, so a new code of a known status still lands in the right branch.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the SDK raises; the message is meant for people."""


class MissingKey(ClientError):
    """No API key was given (argument or EDITQUEUE_API_KEY)."""


class Unreachable(ClientError):
    """The API could not be reached at all (connection refused, DNS, timeouts)."""


APIConnectionError = Unreachable


class WaitTimeout(ClientError):
    """`wait()` gave up: the job or batch had not ended within the timeout."""


class APIError(ClientError):
    """The API answered with an error (RFC 9457 problem details when it sent them)."""

    def __init__(self, status: int, problem: dict[str, Any], headers: dict[str, str]) -> None:
        self.status = status
        self.code = str(problem.get("code") or "error")
        self.title = str(problem.get("title") or "")
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        self.errors: list[dict[str, Any]] = [e for e in problem.get("errors") or [] if e]
        self.headers = headers
        lines = [f"HTTP {status} {self.code}: {self.detail}"]
        lines += [f"  {e.get('field')}: {e.get('message')}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  … and {len(self.errors) - 20} more")
        super().__init__("\n".join(lines))


class BadRequest(APIError):
    """400: the request could not be read (malformed JSON, bad parameters)."""


class AuthenticationError(APIError):
    """401: the API key is missing, unknown or revoked."""


class PermissionDenied(APIError):
    """403."""


class NotFound(APIError):
    """404: no such object (or another tenant's: the API never says which)."""


class Conflict(APIError):
    """409: the object is in a state that forbids the request."""


class JobFinished(Conflict):
    """409 `job_finished`: the job already ended (e.g. cancel after success)."""


class PayloadTooLarge(APIError):
    """413."""


class ValidationFailed(APIError):
    """422: the body broke the contract; `fields` maps each field path to its message."""

    @property
    def fields(self) -> dict[str, str]:
        """`{"jobs[17].prompt": "…", …}` from the problem's `errors`."""
        return {str(e.get("field")): str(e.get("message")) for e in self.errors}


class IdempotencyKeyReused(ValidationFailed):
    """422 `idempotency_key_reused`: the key was used before with a different body."""


class BudgetExceeded(APIError):
    """402 `budget_exceeded`: the job would pass the tenant's monthly budget."""


class RateLimited(APIError):
    """429 (after the SDK's own bounded retries); `retry_after` is in seconds."""

    @property
    def retry_after(self) -> float | None:
        """The server's Retry-After, when it sent one."""
        try:
            return float(self.headers.get("retry-after", ""))
        except ValueError:
            return None


class ServerError(APIError):
    """5xx."""


_BY_CODE: dict[str, type[APIError]] = {
    "job_finished": JobFinished,
    "idempotency_key_reused": IdempotencyKeyReused,
    "budget_exceeded": BudgetExceeded,
    "rate_limited": RateLimited,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: BudgetExceeded,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
}


def error_for(status: int, problem: dict[str, Any], headers: dict[str, str]) -> APIError:
    """The exception for one error answer."""
    cls = _BY_CODE.get(str(problem.get("code")))
    if cls is None:
        cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    return cls(status, problem, headers)
