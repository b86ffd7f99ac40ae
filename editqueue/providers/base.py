"""The one small interface every vendor adapter implements.

Vendor quirks (field names, string-encoded JSON, error envelopes) stay inside the
adapter modules; everything that crosses this boundary is vendor-neutral.

Vendor failures cross it as one exception tree, so callers branch on the type:

    ProviderError           any vendor failure (401/403/404 = our configuration, internal)
    ├── RateLimited         429: come back after `retry_after`; costs no retry budget
    ├── ProviderUnavailable 5xx, 408, timeouts, connection trouble: transient
    ├── RequestRejected     the request itself is refused (invalid request or image,
    │                       moderation): every vendor would refuse it alike
    ├── TaskFailed          the vendor ran the task and reports it failed
    └── BadOutput           the vendor's answer or results are unusable (unreadable,
                            missing, or a result link we refuse to fetch)

Each carries the public `code` (`Job.error.code`), `message`, `provider`,
`provider_code`, `retryable` and `retry_after`. `ProviderError(code, ...)` itself builds
the subclass its code names (rate_limited → RateLimited, ...), so an error made from a
code alone is still caught by type. Adapters mark a failed task's error with
`as_task_failure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from editqueue.jobs.errors import job_error

# Error codes of the public contract (`Job.error.code` in the OpenAPI document).
ErrorCode = Literal[
    "invalid_request",
    "invalid_image",
    "content_rejected",
    "provider_error",
    "provider_unavailable",
    "rate_limited",
    "timeout",
    "storage_error",
    "internal_error",
]


class ProviderError(Exception):
    """A vendor call failed; already mapped to the public error vocabulary."""

    def __new__(
        cls, code: ErrorCode = "provider_error", *args: Any, **kwargs: Any
    ) -> ProviderError:
        # The base class called with a code builds that code's subclass (see the module
        # docstring); a subclass called directly is itself.
        if cls is ProviderError:
            cls = _BY_CODE.get(code, ProviderError)
        return super().__new__(cls)

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        provider: str,
        provider_code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider = provider
        self.provider_code = provider_code
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code

    def as_dict(self) -> dict[str, Any]:
        """The `error` object of the Job, as the public API spells it."""
        return job_error(
            self.code,
            self.message,
            provider=self.provider,
            provider_code=self.provider_code,
            retryable=self.retryable,
        )


class RateLimited(ProviderError):
    """The vendor said 429: skip it until `retry_after`; the attempt costs no budget."""


class ProviderUnavailable(ProviderError):
    """The vendor is down or slow (5xx, 408, timeout, connection error): transient."""


class RequestRejected(ProviderError):
    """The vendor refused the request itself (invalid request or image, moderation).

    Another vendor would refuse it the same way, so the job ends.
    """


class TaskFailed(ProviderError):
    """The vendor ran the task and reports that it failed."""


class BadOutput(ProviderError):
    """The vendor's answer or results cannot be used: unreadable, missing, or unsafe."""


_BY_CODE: dict[str, type[ProviderError]] = {
    "rate_limited": RateLimited,
    "provider_unavailable": ProviderUnavailable,
    "timeout": ProviderUnavailable,
    "invalid_request": RequestRejected,
    "invalid_image": RequestRejected,
    "content_rejected": RequestRejected,
}


def as_task_failure(error: ProviderError) -> ProviderError:
    """A failed task's error: a plain ProviderError becomes TaskFailed, with the same fields."""
    if type(error) is not ProviderError:
        return error
    return TaskFailed(
        error.code,
        error.message,
        provider=error.provider,
        provider_code=error.provider_code,
        retryable=error.retryable,
        retry_after=error.retry_after,
        status_code=error.status_code,
    )


@dataclasses.dataclass(frozen=True)
class InputImage:
    """An input image already fetched, validated and stored by us."""

    data: bytes
    content_type: str  # image/png, image/jpeg, image/webp
    url: str  # a link the vendor can fetch (our signed storage link)
    width: int
    height: int

    def data_url(self) -> str:
        """`data:image/<fmt>;base64,…` for vendors that take inline images."""
        import base64

        fmt = self.content_type.split("/", 1)[1]
        return f"data:image/{fmt};base64,{base64.b64encode(self.data).decode()}"


@dataclasses.dataclass(frozen=True)
class EditRequest:
    """A vendor-neutral edit request (the job, resolved against the catalog)."""

    job_id: str
    model: str  # canonical catalog id, e.g. "seededit-3.0", "seedream-4.0-edit"
    prompt: str
    images: list[InputImage]
    size: str | None = None  # "adaptive" or "WxH"
    aspect_ratio: str | None = None  # seedream: "1:1", "4:3", ...
    resolution: str | None = None  # seedream: "1K" | "2K" | "4K"
    n: int = 1
    seed: int | None = None  # -1 = random
    guidance_scale: float | None = None  # 1–10 in our scale
    watermark: bool = False
    provider_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    callback_url: str | None = None  # where callback-capable vendors should POST


@dataclasses.dataclass(frozen=True)
class OutputRef:
    """One result as the vendor handed it over: a (short-lived) URL or inline bytes."""

    url: str | None = None
    data: bytes | None = None
    content_type: str | None = None


TaskState = Literal["running", "succeeded", "failed"]


@dataclasses.dataclass(frozen=True)
class TaskStatus:
    """Where a vendor task stands: the answer of submit, poll or a parsed callback."""

    state: TaskState
    task_id: str | None = None
    outputs: list[OutputRef] = dataclasses.field(default_factory=list)
    usage: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: ProviderError | None = None
    progress: float | None = None


@dataclasses.dataclass(frozen=True)
class CallbackNotice:
    """What a vendor callback says: which task, and its claimed status.

    Only `task_id` is acted on (it must name the job's task); the claimed status comes
    from an unsigned body and is never stored: the worker asks the vendor's task query.
    """

    task_id: str
    status: TaskStatus | None = None


class CallbackRejected(Exception):
    """A callback failed authentication (bad or missing signature)."""


class Provider(Protocol):
    """A vendor adapter: one long-lived httpx client, one vendor call per method."""

    name: str
    supports_callback: bool
    supports_poll: bool

    def submit(self, request: EditRequest) -> TaskStatus:
        """Start an edit. Synchronous vendors answer `succeeded` with outputs;
        task vendors answer `running` with `task_id`. Raises ProviderError."""
        ...

    def poll(self, task_id: str) -> TaskStatus:
        """Read a task's state. Raises ProviderError (retryable for transient trouble)."""
        ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """Authenticate and parse a vendor callback. Raises CallbackRejected or ValueError."""
        ...

    def close(self) -> None:
        """Release the adapter's HTTP client."""
        ...
