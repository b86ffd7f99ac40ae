"""Request and response shapes of the public contract (API.md), as pydantic models.

The API validates bodies with these and generates `/openapi.json` from them, so the
served document and the code cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from editqueue.webhooks.signing import DEFAULT_JOB_EVENTS

ProviderName = Literal["ark", "cometapi", "acedata", "kie", "vtrix", "sandbox"]
JobEventType = Literal["job.started", "job.succeeded", "job.failed", "job.canceled"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]

MAX_PROMPT_CHARS = 5000  # the largest any model allows; the catalog narrows it per model
MAX_IMAGE_REF_CHARS = 15_000_000  # a 10 MB image as a base64 data URL, with headroom


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class JobCreate(_Strict):
    """Body of `POST /v1/jobs` (and of each item of a batch)."""

    model: Annotated[str, Field(min_length=1, max_length=100)]
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
    images: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_REF_CHARS)]] | None,
        Field(max_length=10, description="https URLs or data:image/<fmt>;base64,… URLs"),
    ] = None
    image: Annotated[
        str | None,
        Field(min_length=1, max_length=MAX_IMAGE_REF_CHARS, description="shorthand: one image"),
    ] = None
    size: Annotated[str | None, Field(pattern=r"^(adaptive|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")] = (
        None
    )
    aspect_ratio: Literal["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"] | None = None
    resolution: Literal["1K", "2K", "4K"] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=6)] | None = None
    seed: Annotated[StrictInt, Field(ge=-1, le=2147483647)] | None = None
    guidance_scale: Annotated[float, Field(ge=1, le=10, strict=False)] | None = None
    watermark: StrictBool | None = None
    provider: ProviderName | None = None
    provider_options: dict[str, Any] | None = None
    webhook_url: Annotated[str | None, Field(max_length=2000)] = None
    webhook_events: Annotated[list[JobEventType] | None, Field(min_length=1, max_length=4)] = None
    metadata: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=40)],
                Annotated[str, Field(max_length=500)],
            ],
            Field(max_length=16),
        ]
        | None
    ) = None
    deadline_seconds: Annotated[StrictInt, Field(ge=10, le=86_400)] | None = None

    @field_validator("guidance_scale", mode="before")
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        # JSON true would otherwise pass as 1.0.
        if isinstance(value, (bool, str)):
            raise ValueError("must be a number")
        return value

    def image_refs(self) -> list[str]:
        """`images`, or the `image` shorthand, as one list."""
        refs = list(self.images or [])
        if self.image is not None:
            refs.append(self.image)
        return refs

    def effective_webhook_events(self) -> list[str]:
        """The events the per-job webhook receives."""
        return list(self.webhook_events or DEFAULT_JOB_EVENTS)


class JobOutput(BaseModel):
    index: int
    url: str
    expires_at: str
    content_type: str
    width: int
    height: int
    bytes: int
    sha256: str


class JobInput(BaseModel):
    url: str | None
    sha256: str | None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None


class JobError(BaseModel):
    code: str
    message: str
    provider: str | None = None
    provider_code: str | None = None
    retryable: bool = False


class Job(BaseModel):
    """The Job object."""

    id: str
    object: Literal["job"]
    status: JobStatus
    model: str
    provider: str | None
    prompt: str
    params: dict[str, Any]
    inputs: list[JobInput]
    outputs: list[JobOutput]
    error: JobError | None
    attempts: int
    batch_id: str | None
    metadata: dict[str, str]
    webhook_url: str | None
    webhook_events: list[str]
    usage: dict[str, Any] | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    deadline_at: str


class JobList(BaseModel):
    data: list[Job]
    next_cursor: str | None


class JobEvent(BaseModel):
    id: str
    type: str
    at: str
    detail: dict[str, Any]


class JobEventList(BaseModel):
    data: list[JobEvent]


class Delivery(BaseModel):
    id: str
    event_id: str
    event_type: str
    url: str
    attempt: int
    status_code: int | None
    response_ms: int | None
    error: str | None
    at: str | None
    next_attempt_at: str | None
    state: Literal["pending", "succeeded", "failed"]


class DeliveryList(BaseModel):
    data: list[Delivery]


class ModelList(BaseModel):
    data: list[dict[str, Any]]


class WebhookSecret(BaseModel):
    secret: str


class ProblemField(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemField] = []


# -- batches --


class BatchCreate(_Strict):
    """Body of `POST /v1/batches`: job bodies, fields shared by all of them, batch metadata."""

    jobs: Annotated[
        list[dict[str, Any]],
        Field(
            min_length=1,
            max_length=1000,
            description="Job bodies as for POST /v1/jobs; a field missing from an item is "
            "taken from `defaults` (metadata is merged key by key, the item winning).",
        ),
    ]
    defaults: Annotated[
        dict[str, Any] | None,
        Field(description="Fields of POST /v1/jobs applied to every item that lacks them."),
    ] = None
    metadata: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=40)],
                Annotated[str, Field(max_length=500)],
            ],
            Field(max_length=16),
        ]
        | None
    ) = None


class BatchCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class Batch(BaseModel):
    """The Batch object: its jobs (in the order they were sent) and live counts by status."""

    id: str
    object: Literal["batch"]
    counts: BatchCounts
    job_ids: list[str]
    metadata: dict[str, str]
    created_at: str
    completed_at: str | None


# -- webhook endpoints --

EndpointEventType = Literal[
    "job.started",
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "batch.completed",
    "webhook_endpoint.disabled",
]
_EVENTS_DOC = (
    "Event types to receive; empty = every type except the opt-in `job.started`, "
    "which an endpoint gets only when it names it."
)


class WebhookEndpointCreate(_Strict):
    """Body of `POST /v1/webhook-endpoints`."""

    url: Annotated[str, Field(min_length=1, max_length=2000)]
    events: Annotated[list[EndpointEventType], Field(max_length=16, description=_EVENTS_DOC)] = []
    description: Annotated[str | None, Field(max_length=500)] = None


class WebhookEndpointUpdate(_Strict):
    """Body of `PATCH /v1/webhook-endpoints/{id}`: only the fields sent change."""

    url: Annotated[str | None, Field(min_length=1, max_length=2000)] = None
    events: Annotated[
        list[EndpointEventType] | None, Field(max_length=16, description=_EVENTS_DOC)
    ] = None
    description: Annotated[str | None, Field(max_length=500)] = None
    disabled: Annotated[
        StrictBool | None,
        Field(description="false re-enables a disabled endpoint and forgets its failures"),
    ] = None

    @field_validator("url", "events", "disabled", mode="after")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only `description` may be cleared; for the others null would be a silent no-op.
        if value is None:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the request sent, by name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class WebhookEndpoint(BaseModel):
    """A tenant webhook endpoint; `secret` appears only in create and rotate-secret answers."""

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    description: str | None
    events: list[str]
    disabled: bool
    disabled_reason: str | None
    failing_since: str | None
    created_at: str
    updated_at: str
    secret: str | None = None


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpoint]
    next_cursor: str | None


class DeliveryAttemptRecord(BaseModel):
    """One POST of a delivery; `response_body` is the receiver's answer cut to 1 KB."""

    attempt: int
    status_code: int | None
    response_ms: int | None
    response_body: str | None
    error: str | None
    at: str


class DeliveryLogEntry(Delivery):
    """A delivery (one event to one target): its latest attempt's outcome and every attempt."""

    endpoint_id: str | None
    job_id: str | None
    created_at: str
    attempts: list[DeliveryAttemptRecord]


class DeliveryLog(BaseModel):
    data: list[DeliveryLogEntry]
    next_cursor: str | None = None


class RecoverRequest(_Strict):
    """Body of `POST /v1/webhook-endpoints/{id}/recover`."""

    since: Annotated[
        str,
        Field(
            max_length=64,
            description="RFC 3339 time: re-send failed deliveries created since then",
            json_schema_extra={"format": "date-time"},
        ),
    ]
    until: Annotated[
        str | None,
        Field(
            max_length=64,
            description="RFC 3339 time: …and before then (default: now)",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None


class Recovery(BaseModel):
    """A recovery queued in the background."""

    object: Literal["recovery"]
    endpoint_id: str
    since: str
    until: str | None
    status: Literal["queued"]
