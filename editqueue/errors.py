"""Domain errors the API turns into RFC 9457 problems; the core never speaks HTTP itself."""

from __future__ import annotations

from typing import Any


class EditqueueError(Exception):
    """Base of errors with a stable `code` and an HTTP-like status for the API layer."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        # Extra members of the problem+json body (RFC 9457 extensions), e.g. a budget's
        # amounts; never overrides the standard members.
        self.extensions: dict[str, Any] = {}


class InvalidRequest(EditqueueError):
    """The request is well-formed but its values break the contract."""

    status = 422
    code = "invalid_request"
    title = "Invalid request"


class InvalidImageError(InvalidRequest):
    """An input image the client sent breaks the model's constraints (the 422 a failed image
    check, `infra.images.ImageRejected`, becomes)."""

    code = "invalid_image"
    title = "Invalid image"


class NotFound(EditqueueError):
    """No such object for this tenant (another tenant's objects are reported the same way)."""

    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(EditqueueError):
    """The object is in a state that does not allow the operation."""

    status = 409
    code = "conflict"
    title = "Conflict"


class JobFinished(Conflict):
    """The job already reached a terminal state."""

    code = "job_finished"
    title = "Job already finished"


class EndpointLimitReached(Conflict):
    """The tenant already has as many webhook endpoints as the deployment allows."""

    code = "endpoint_limit_reached"
    title = "Webhook endpoint limit reached"


class IdempotencyKeyReused(InvalidRequest):
    """The Idempotency-Key was used before with a different body."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused"
