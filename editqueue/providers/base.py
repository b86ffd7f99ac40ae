"""The one small interface every vendor adapter implements.

Vendor quirks (field names, string-encoded JSON, error envelopes) stay inside the
adapter modules; everything that crosses this boundary is vendor-neutral.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Protocol

# Error codes of the public contract (API.md, Job.error.code).
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
        """The `error` object of the Job, as API.md spells it."""
        return {
            "code": self.code,
            "message": self.message,
            "provider": self.provider,
            "provider_code": self.provider_code,
            "retryable": self.retryable,
        }


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
