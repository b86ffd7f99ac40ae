"""Request and response shapes of the public contract, as pydantic models.

The API validates bodies with these and generates `/openapi.json` from them, so the
served document and the code cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator
from pydantic.json_schema import WithJsonSchema

from editqueue.webhooks.signing import DEFAULT_JOB_EVENTS

ProviderName = Literal["ark", "cometapi", "acedata", "kie", "vtrix", "sandbox"]
JobEventType = Literal["job.started", "job.succeeded", "job.failed", "job.canceled"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
# config.ROUTING_STRATEGIES (tests/unit/test_routing_strategies.py keeps the two equal).
RoutingStrategy = Literal["ordered", "cheapest", "fastest", "least_busy", "weighted"]
# `metadata` follows one rule on a job and on a batch's defaults alike.
JobMetadata = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=40)],
        Annotated[str, Field(max_length=500)],
    ],
    Field(max_length=16),
]

MAX_PROMPT_CHARS = 5000  # the largest any model allows; the catalog narrows it per model
MAX_IMAGE_REF_CHARS = 15_000_000  # a 10 MB image as a base64 data URL, with headroom


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class JobCreate(_Strict):
    """Body of `POST /v1/jobs` (and of each item of a batch)."""

    model: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="Catalog model id or alias (GET /v1/models), 1–100 characters.",
        ),
    ]
    prompt: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_PROMPT_CHARS,
            description="Edit instruction, 1–5000 characters; the model's `prompt_max_chars` in "
            "the catalog narrows it (800 for seededit-3.0).",
        ),
    ]
    images: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_REF_CHARS)]] | None,
        Field(
            max_length=10,
            description="Input images, up to 10 (the model's `images_max` in the catalog narrows "
            "it; seededit-3.0 takes 1): https URLs or "
            "data:image/<png|jpeg|webp>;base64,… URLs, each image up to 10 MB.",
        ),
    ] = None
    image: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_IMAGE_REF_CHARS,
            description="Shorthand for one image (a URL or data URL), added after `images`.",
        ),
    ] = None
    size: Annotated[
        str | None,
        Field(
            pattern=r"^(adaptive|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$",
            description="Output size: `adaptive` (seededit-3.0) or WIDTHxHEIGHT in pixels "
            "(seedream-4.0-edit, within the catalog's range).",
        ),
    ] = None
    aspect_ratio: Annotated[
        Literal["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"] | None,
        Field(description="Output aspect ratio, for models whose catalog entry lists it."),
    ] = None
    resolution: Annotated[
        Literal["1K", "2K", "4K"] | None,
        Field(
            description="Output resolution class (1K, 2K, 4K), for models whose catalog entry "
            "lists it."
        ),
    ] = None
    n: Annotated[
        Annotated[StrictInt, Field(ge=1, le=6)] | None,
        Field(
            description="Images to generate, 1–6 (the model's catalog maximum applies); default 1."
        ),
    ] = None
    seed: Annotated[
        Annotated[StrictInt, Field(ge=-1, le=2147483647)] | None,
        Field(
            description="Random seed, -1 (random) to 2147483647; the same seed and inputs repeat "
            "a result where the vendor allows."
        ),
    ] = None
    guidance_scale: Annotated[
        Annotated[float, Field(ge=1, le=10, strict=False)] | None,
        Field(description="Prompt adherence, 1–10 (a number; default from the catalog, 5.5)."),
    ] = None
    watermark: Annotated[
        StrictBool | None, Field(description="Ask the vendor to add its watermark (default false).")
    ] = None
    provider: Annotated[
        ProviderName | None,
        Field(description="Pin the job to one vendor instead of the model's route."),
    ] = None
    routing: Annotated[
        RoutingStrategy | None,
        Field(
            description="How the job's vendor is picked among its route: ordered (route "
            "order), cheapest (price table), fastest (measured p50 latency), least_busy (most "
            "free vendor slots) or weighted (EDITQUEUE_ROUTES weights); default: the model's "
            "configured strategy (EDITQUEUE_ROUTING). Failover works the same under each."
        ),
    ] = None
    provider_options: Annotated[
        dict[str, Any] | None,
        Field(description="Vendor-specific parameters passed through as they are (object)."),
    ] = None
    webhook_url: Annotated[
        str | None,
        Field(
            max_length=2000,
            description="https URL that receives this job's events (Standard Webhooks signed), "
            "up to 2000 characters.",
        ),
    ] = None
    webhook_events: Annotated[
        list[JobEventType] | None,
        Field(
            min_length=1,
            max_length=4,
            description="Events sent to `webhook_url`, 1–4 of the job event types; default "
            "job.succeeded, job.failed, job.canceled.",
        ),
    ] = None
    metadata: Annotated[
        JobMetadata | None,
        Field(
            description="Client key/value strings, returned as sent and filterable with "
            "metadata[KEY]=VALUE: up to 16 keys of 1–40 characters, values up to 500."
        ),
    ] = None
    deadline_seconds: Annotated[
        Annotated[StrictInt, Field(ge=10, le=86_400)] | None,
        Field(
            description="Fail the job with `timeout` if not finished this many seconds after "
            "creation, 10–86400 (default from the server)."
        ),
    ] = None

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
    index: Annotated[int, Field(description="Position of the image among the outputs, from 0.")]
    url: Annotated[
        str, Field(description="Signed download link of the stored image; expires at `expires_at`.")
    ]
    expires_at: Annotated[
        str,
        Field(
            description="RFC 3339 time (UTC) after which `url` stops working; GET the job again "
            "for a fresh link."
        ),
    ]
    content_type: Annotated[str, Field(description="MIME type of the image, e.g. image/png.")]
    width: Annotated[int, Field(description="Width in pixels.")]
    height: Annotated[int, Field(description="Height in pixels.")]
    bytes: Annotated[int, Field(description="Size of the image in bytes.")]
    sha256: Annotated[str, Field(description="Hex SHA-256 of the image bytes.")]


class JobInput(BaseModel):
    url: Annotated[
        str | None,
        Field(description="The input's https URL as sent; null for uploaded or data-URL images."),
    ]
    sha256: Annotated[
        str | None, Field(description="Hex SHA-256 of the stored input bytes; null until fetched.")
    ]
    content_type: Annotated[str | None, Field(description="MIME type of the input image.")] = None
    width: Annotated[int | None, Field(description="Width in pixels.")] = None
    height: Annotated[int | None, Field(description="Height in pixels.")] = None
    bytes: Annotated[int | None, Field(description="Size in bytes (at most 10 MB).")] = None


class JobError(BaseModel):
    code: Annotated[
        str,
        Field(
            description="Stable error code: invalid_request, invalid_image, content_rejected, "
            "provider_error, provider_unavailable, rate_limited, timeout, "
            "storage_error or internal_error."
        ),
    ]
    message: Annotated[str, Field(description="What went wrong, for a person.")]
    provider: Annotated[
        str | None, Field(description="Vendor whose answer caused the failure, if any.")
    ] = None
    provider_code: Annotated[
        str | None, Field(description="The vendor's own error code, as it sent it.")
    ] = None
    retryable: Annotated[
        bool, Field(description="True when sending the same job again may succeed.")
    ] = False


# A Job's usage.cost (editqueue.spend.cost); usage stays an open object (vendors' own fields
# pass through), typed in the OpenAPI document only so clients keep reading it as a dict.
COST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What the job cost, summed over every attempt the vendor billed.",
    "required": ["amount", "currency", "source"],
    "properties": {
        "amount": {
            "type": "string",
            "pattern": "^[0-9]+\\.[0-9]{6}$",
            "description": "Decimal string with 6 places, e.g. `0.030000`.",
        },
        "currency": {"type": "string", "description": "ISO 4217 code (EDITQUEUE_CURRENCY)."},
        "source": {
            "type": "string",
            "enum": ["reported", "estimated", "mixed"],
            "description": "`reported`: the vendor's own figure (Vtrix `usage.cost`, KIE "
            "credits × EDITQUEUE_KIE_CREDIT_PRICE); `estimated`: the price table "
            "(EDITQUEUE_PRICES); `mixed`: some of each.",
        },
    },
}
JobUsage = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "cost": COST_SCHEMA,
                "images": {"type": "integer", "description": "Output images stored."},
                "provider_task_id": {"type": "string", "description": "The vendor's task id."},
                "attempts": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": True},
                    "description": "One entry per vendor attempt (provider, attempt, outcome, "
                    "at, and `cost` when that attempt was billed).",
                },
            },
        }
    ),
]


class Job(BaseModel):
    """The Job object."""

    id: Annotated[str, Field(description="Job id, `job_` + a 26-character ULID.")]
    object: Annotated[Literal["job"], Field(description="Always `job`.")]
    status: Annotated[
        JobStatus,
        Field(
            description="queued → running → succeeded | failed | canceled (the last three are "
            "final)."
        ),
    ]
    model: Annotated[str, Field(description="Canonical catalog model id.")]
    provider: Annotated[str | None, Field(description="Vendor serving the job; null until routed.")]
    routing: Annotated[
        RoutingStrategy | None,
        Field(
            description="The routing strategy the job asked for; null: its model's configured "
            "one. What was used, and why that vendor, is in `usage.routing`."
        ),
    ] = None
    prompt: Annotated[str, Field(description="The edit instruction as sent.")]
    params: Annotated[
        dict[str, Any],
        Field(description="Normalized generation parameters (size, n, seed, guidance_scale, …)."),
    ]
    inputs: Annotated[
        list[JobInput], Field(description="Input images, in the order sent (at most 10).")
    ]
    outputs: Annotated[
        list[JobOutput], Field(description="Result images once succeeded; empty before.")
    ]
    error: Annotated[JobError | None, Field(description="Why the job failed; null unless failed.")]
    attempts: Annotated[
        int, Field(description="Vendor attempts made so far (bounded by EDITQUEUE_MAX_ATTEMPTS).")
    ]
    batch_id: Annotated[str | None, Field(description="Batch the job belongs to, or null.")]
    metadata: Annotated[
        dict[str, str],
        Field(
            description="Client key/value strings as sent (up to 16 keys of ≤ 40, values ≤ 500 "
            "characters)."
        ),
    ]
    webhook_url: Annotated[str | None, Field(description="Per-job webhook target, or null.")]
    webhook_events: Annotated[list[str], Field(description="Events sent to `webhook_url`.")]
    usage: Annotated[
        JobUsage | None,
        Field(
            description="Billing usage, e.g. `cost` {amount, currency, source}; null when unknown. "
            "`routing` {strategy, provider, reason, at} says why the vendor was chosen."
        ),
    ]
    created_at: Annotated[str, Field(description="RFC 3339 time (UTC) of creation.")]
    started_at: Annotated[
        str | None, Field(description="RFC 3339 time (UTC) of the first vendor attempt, or null.")
    ]
    completed_at: Annotated[
        str | None,
        Field(description="RFC 3339 time (UTC) the job reached a final status, or null."),
    ]
    deadline_at: Annotated[
        str, Field(description="RFC 3339 time (UTC) after which the job fails with `timeout`.")
    ]


class JobList(BaseModel):
    data: Annotated[list[Job], Field(description="Jobs, newest first (at most `limit`).")]
    next_cursor: Annotated[
        str | None, Field(description="Pass as `cursor` for the next page; null on the last page.")
    ]


class JobEvent(BaseModel):
    id: Annotated[
        str, Field(description="Event id, increasing within the job (also the SSE `id`).")
    ]
    type: Annotated[
        str,
        Field(
            description="Event type, e.g. job.created, job.started, attempt.failed, "
            "job.succeeded, webhook.delivered."
        ),
    ]
    at: Annotated[str, Field(description="RFC 3339 time (UTC) of the event.")]
    detail: Annotated[
        dict[str, Any],
        Field(description="Event-specific facts (vendor, attempt, status codes, …)."),
    ]


class JobEventList(BaseModel):
    data: Annotated[list[JobEvent], Field(description="The job's events, oldest first.")]


class Delivery(BaseModel):
    id: Annotated[str, Field(description="Delivery id, `dlv_…`.")]
    event_id: Annotated[
        str, Field(description="Event id sent as `webhook-id` (stable across retries).")
    ]
    event_type: Annotated[str, Field(description="Event type delivered, e.g. job.succeeded.")]
    url: Annotated[str, Field(description="Target URL.")]
    attempt: Annotated[int, Field(description="Attempts made so far, from 1.")]
    status_code: Annotated[
        int | None, Field(description="HTTP status of the latest attempt; null if none answered.")
    ]
    response_ms: Annotated[
        int | None, Field(description="Duration of the latest attempt in milliseconds.")
    ]
    error: Annotated[
        str | None,
        Field(description="Transport error of the latest attempt (timeout, refused, …), or null."),
    ]
    at: Annotated[
        str | None, Field(description="RFC 3339 time (UTC) of the latest attempt, or null.")
    ]
    next_attempt_at: Annotated[
        str | None,
        Field(description="RFC 3339 time (UTC) of the next retry, or null when none is due."),
    ]
    state: Annotated[
        Literal["pending", "succeeded", "failed"],
        Field(
            description="pending (will be retried), succeeded (a 2xx) or failed (retries "
            "exhausted)."
        ),
    ]


class DeliveryList(BaseModel):
    data: Annotated[list[Delivery], Field(description="Deliveries, newest first.")]


class ModelList(BaseModel):
    data: Annotated[
        list[dict[str, Any]],
        Field(
            description="Catalog entries: id, aliases, providers, and each parameter's limits "
            "(prompt_max_chars, images_max, sizes, n, seed, guidance_scale)."
        ),
    ]


class WebhookSecret(BaseModel):
    secret: Annotated[str, Field(description="Signing secret, `whsec_` + base64 of the key bytes.")]


class ProblemField(BaseModel):
    field: Annotated[
        str, Field(description="Path of the offending field, e.g. `images[0]` or `metadata.key`.")
    ]
    message: Annotated[str, Field(description="What is wrong with it.")]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: Annotated[
        str, Field(description="URI of the problem type, https://editqueue.dev/problems/<code>.")
    ]
    title: Annotated[str, Field(description="Short summary of the problem type.")]
    status: Annotated[int, Field(description="HTTP status code, repeated.")]
    detail: Annotated[str, Field(description="What went wrong with this request, for a person.")]
    code: Annotated[
        str, Field(description="Stable snake_case problem code (the last segment of `type`).")
    ]
    errors: Annotated[
        list[ProblemField], Field(description="One entry per invalid field (422); empty otherwise.")
    ] = []


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
    metadata: Annotated[
        JobMetadata | None,
        Field(
            description="The batch's own key/value strings: up to 16 keys of 1–40 characters, "
            "values up to 500 (each job keeps its own `metadata`)."
        ),
    ] = None


class BatchCounts(BaseModel):
    total: Annotated[int, Field(description="Jobs in the batch (1–1000).")]
    queued: Annotated[int, Field(description="Jobs queued.")]
    running: Annotated[int, Field(description="Jobs running.")]
    succeeded: Annotated[int, Field(description="Jobs succeeded.")]
    failed: Annotated[int, Field(description="Jobs failed.")]
    canceled: Annotated[int, Field(description="Jobs canceled.")]


class Batch(BaseModel):
    """The Batch object: its jobs (in the order they were sent) and live counts by status."""

    id: Annotated[str, Field(description="Batch id, `bat_` + a ULID.")]
    object: Annotated[Literal["batch"], Field(description="Always `batch`.")]
    counts: Annotated[BatchCounts, Field(description="Live job counts by status.")]
    job_ids: Annotated[list[str], Field(description="Job ids, in the order the jobs were sent.")]
    metadata: Annotated[dict[str, str], Field(description="Client key/value strings as sent.")]
    created_at: Annotated[str, Field(description="RFC 3339 time (UTC) of creation.")]
    completed_at: Annotated[
        str | None, Field(description="RFC 3339 time (UTC) the last job ended, or null.")
    ]


# -- budgets --

_Amount = Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]{6}$", examples=["200.000000"])]


class BudgetThreshold(BaseModel):
    """`data` of `tenant.budget_threshold`: the month's spend reached budget × alert ratio."""

    object: Annotated[Literal["budget_threshold"], Field(description="The object type.")]
    tenant_id: Annotated[str, Field(description="The tenant whose budget it is.")]
    month: Annotated[str, Field(description="The calendar month (UTC), YYYY-MM.")]
    budget: Annotated[_Amount, Field(description="The tenant's monthly budget.")]
    alert_ratio: Annotated[str, Field(description="The share of the budget that alerts.")]
    threshold: Annotated[_Amount, Field(description="budget × alert_ratio.")]
    spent: Annotated[_Amount, Field(description="What the month's ended jobs cost.")]
    reserved: Annotated[_Amount, Field(description="Estimates of the month's live jobs.")]
    left: Annotated[_Amount, Field(description="budget − spent − reserved (not below 0).")]
    currency: Annotated[str, Field(description="ISO 4217 code (EDITQUEUE_CURRENCY).")]


# -- webhook endpoints --

EndpointEventType = Literal[
    "job.started",
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "batch.completed",
    "webhook_endpoint.disabled",
    "tenant.budget_threshold",
]
_EVENTS_DOC = (
    "Event types to receive; empty = every type except the opt-in `job.started`, "
    "which an endpoint gets only when it names it."
)


class WebhookEndpointCreate(_Strict):
    """Body of `POST /v1/webhook-endpoints`."""

    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2000,
            description="https URL that receives events, 1–2000 characters (private addresses "
            "are refused).",
        ),
    ]
    events: Annotated[list[EndpointEventType], Field(max_length=16, description=_EVENTS_DOC)] = []
    description: Annotated[
        str | None,
        Field(max_length=500, description="Free text for people, up to 500 characters."),
    ] = None


class WebhookEndpointUpdate(_Strict):
    """Body of `PATCH /v1/webhook-endpoints/{id}`: only the fields sent change."""

    url: Annotated[
        str | None,
        Field(min_length=1, max_length=2000, description="New target URL, 1–2000 characters."),
    ] = None
    events: Annotated[
        list[EndpointEventType] | None, Field(max_length=16, description=_EVENTS_DOC)
    ] = None
    description: Annotated[
        str | None,
        Field(max_length=500, description="New free text, up to 500 characters; null clears it."),
    ] = None
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

    id: Annotated[str, Field(description="Endpoint id, `we_…`.")]
    object: Annotated[Literal["webhook_endpoint"], Field(description="Always `webhook_endpoint`.")]
    url: Annotated[str, Field(description="Target URL.")]
    description: Annotated[str | None, Field(description="Free text, or null.")]
    events: Annotated[
        list[str],
        Field(
            description="Subscribed event types; empty = every type except the opt-in job.started."
        ),
    ]
    disabled: Annotated[
        bool,
        Field(description="True when no events are sent (by request or after failing too long)."),
    ]
    disabled_reason: Annotated[
        str | None, Field(description="Why it was disabled (e.g. failing), or null.")
    ]
    failing_since: Annotated[
        str | None,
        Field(
            description="RFC 3339 time (UTC) of the first failure in the current run of "
            "failures, or null."
        ),
    ]
    created_at: Annotated[str, Field(description="RFC 3339 time (UTC) of creation.")]
    updated_at: Annotated[str, Field(description="RFC 3339 time (UTC) of the last change.")]
    secret: Annotated[
        str | None,
        Field(
            description="Signing secret (`whsec_…`); only in the create and rotate-secret answers."
        ),
    ] = None


class WebhookEndpointList(BaseModel):
    data: Annotated[list[WebhookEndpoint], Field(description="Endpoints, newest first.")]
    next_cursor: Annotated[
        str | None, Field(description="Pass as `cursor` for the next page; null on the last page.")
    ]


class DeliveryAttemptRecord(BaseModel):
    """One POST of a delivery; `response_body` is the receiver's answer cut to 1 KB."""

    attempt: Annotated[int, Field(description="Attempt number, from 1.")]
    status_code: Annotated[
        int | None, Field(description="HTTP status the receiver answered, or null.")
    ]
    response_ms: Annotated[int | None, Field(description="Duration in milliseconds, or null.")]
    response_body: Annotated[
        str | None, Field(description="The receiver's answer, cut to 1 KB, or null.")
    ]
    error: Annotated[str | None, Field(description="Transport error, or null.")]
    at: Annotated[str, Field(description="RFC 3339 time (UTC) of the attempt.")]


class DeliveryLogEntry(Delivery):
    """A delivery (one event to one target): its latest attempt's outcome and every attempt."""

    endpoint_id: Annotated[
        str | None,
        Field(description="Endpoint the delivery went to; null for a job's own webhook_url."),
    ]
    job_id: Annotated[
        str | None, Field(description="Job the event is about, or null (tenant events).")
    ]
    created_at: Annotated[str, Field(description="RFC 3339 time (UTC) the delivery was created.")]
    attempts: Annotated[
        list[DeliveryAttemptRecord], Field(description="Every attempt, oldest first.")
    ]


class DeliveryLog(BaseModel):
    data: Annotated[list[DeliveryLogEntry], Field(description="Deliveries, newest first.")]
    next_cursor: Annotated[
        str | None, Field(description="Pass as `cursor` for the next page; null on the last page.")
    ] = None


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

    object: Annotated[Literal["recovery"], Field(description="Always `recovery`.")]
    endpoint_id: Annotated[str, Field(description="Endpoint whose failed deliveries are re-sent.")]
    since: Annotated[str, Field(description="RFC 3339 time (UTC): start of the window.")]
    until: Annotated[
        str | None, Field(description="RFC 3339 time (UTC): end of the window, or null for now.")
    ]
    status: Annotated[
        Literal["queued"], Field(description="Always `queued`: the re-sends run in the background.")
    ]


# -- usage report --


class UsageAmount(BaseModel):
    amount: Annotated[
        str, Field(description="Decimal string, e.g. `1.230000` (summed `usage.cost.amount`).")
    ]
    currency: Annotated[str, Field(description="ISO 4217 code (EDITQUEUE_CURRENCY).")]


class UsageTotal(BaseModel):
    jobs: Annotated[int, Field(description="Jobs created in the window, in any state.")]
    images: Annotated[int, Field(description="Output images stored.")]
    succeeded: Annotated[int, Field(description="Jobs that ended `succeeded`.")]
    failed: Annotated[
        int, Field(description="Jobs that ended `failed` (deadline expiries included).")
    ]
    canceled: Annotated[int, Field(description="Jobs that ended `canceled`.")]
    unpriced: Annotated[
        int,
        Field(description="Succeeded jobs without a cost (unknown price): `cost` excludes them."),
    ]
    cost: Annotated[UsageAmount, Field(description="Sum of the jobs' `usage.cost`.")]


class UsageRow(UsageTotal):
    key: Annotated[
        str | None,
        Field(description="`YYYY-MM-DD` (UTC day), model id, or provider (null: never routed)."),
    ]


class Usage(BaseModel):
    """`GET /v1/usage`: jobs, images, outcomes and cost per day, model or provider."""

    object: Annotated[Literal["usage"], Field(description="Always `usage`.")]
    from_: Annotated[
        str,
        Field(alias="from", description="RFC 3339 time (UTC): start of the window (inclusive)."),
    ]
    to: Annotated[str, Field(description="RFC 3339 time (UTC): end of the window (exclusive).")]
    group_by: Annotated[
        Literal["day", "model", "provider"], Field(description="What each row's `key` is.")
    ]
    currency: Annotated[str, Field(description="Currency of every amount.")]
    data: Annotated[
        list[UsageRow], Field(description="One row per key with jobs in the window, by key.")
    ]
    total: Annotated[UsageTotal, Field(description="The rows summed.")]
