"""`/openapi.json` generated from the routes and the pydantic schemas they declare.

Each view carries an `@operation(...)` record; its docstring is the operation's description.
Problem responses, the headers every response can carry and the `webhooks` section are
added here, so a new route only declares what is particular to it.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.errors import _HTTP_CODES, PROBLEM_TYPE
from editqueue import errors as domain_errors
from editqueue import schemas
from editqueue.webhooks.signing import DEFAULT_JOB_EVENTS, ENDPOINT_EVENT_TYPES

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"
HEADER_REF = "#/components/headers/{name}"


@dataclass
class Operation:
    """What a view declares about itself for the OpenAPI document."""

    summary: str
    tags: list[str]
    body: type[BaseModel] | None = None
    body_content_types: tuple[str, ...] = ("application/json",)
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    query: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    auth: bool = True
    # Which securitySchemes entry guards the operation when `auth` (api/admin.py: adminKey).
    security_scheme: str = "bearer"
    raw_body: dict[str, Any] | None = None
    extra_content: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Defaults to the view's docstring.
    description: str | None = None
    # Names from RESPONSE_HEADERS that a success status carries, by status.
    response_headers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # Overrides of the generic status text, by status.
    response_descriptions: dict[int, str] = field(default_factory=dict)
    # A non-JSON success body: {status: {media type: media type object}} (no pydantic model).
    raw_responses: dict[int, dict[str, Any]] = field(default_factory=dict)


def operation(summary: str, *, tags: list[str], **kwargs: Any) -> Callable[[F], F]:
    """Attach OpenAPI metadata to a view function."""

    def decorate(view: F) -> F:
        meta = Operation(summary=summary, tags=tags, **kwargs)
        view._openapi = meta  # type: ignore[attr-defined]  # read back when the spec is built
        return view

    return decorate


def query_param(
    name: str, schema: dict[str, Any], description: str = "", *, style: str | None = None
) -> dict[str, Any]:
    """An OpenAPI query parameter object."""
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    if style:
        param["style"] = style
        param["explode"] = True
    return param


def header_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI header parameter object."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_INT = {"type": "integer", "minimum": 0}

# components/headers: every response header the API sets (api/jobs.py, api/batches.py,
# api/webhook_endpoints.py, api/rate_limit.py, api/errors.py).
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "Location": _header("Path of the created (or replayed) resource, e.g. /v1/jobs/job_…"),
    "Idempotent-Replayed": _header(
        "`true` when this answer replays the request first sent with the same Idempotency-Key.",
        {"type": "string", "enum": ["true"]},
    ),
    "Preference-Applied": _header(
        "Echoes the honoured `Prefer: wait=N`.", {"type": "string", "example": "wait=10"}
    ),
    "RateLimit-Limit": _header("Requests the API key may burst at once.", _INT),
    "RateLimit-Remaining": _header("Requests left in the current window.", _INT),
    "RateLimit-Reset": _header("Seconds until the key's bucket is full again.", _INT),
    "RateLimit-Policy": _header(
        "The limit and its window in seconds.", {"type": "string", "example": "100;w=2"}
    ),
    "Retry-After": _header("Seconds to wait before retrying.", {"type": "integer", "minimum": 1}),
    "WWW-Authenticate": _header("The authentication scheme expected (Bearer)."),
}
_RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted: the work goes on in the background",
    204: "No content",
    302: "Redirect",
}

_PROBLEM_TEXT = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    402: "Payment required: the tenant's monthly budget does not cover this request's "
    "estimate. `budget_exceeded` adds `budget`, `spent`, `reserved`, `left`, `estimate` "
    "(decimal strings) and `currency`; nothing was created",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict with the resource's current state",
    413: "Request too large",
    414: "URI too long",
    415: "Unsupported media type",
    422: "Validation failed: `errors` names each field and what is wrong with it",
    429: "Rate limited — retry after Retry-After seconds",
    503: "Service unavailable — a dependency is down; retry after Retry-After seconds",
}

# Problem codes raised directly by the API layer, beyond api/errors.py's per-status default.
_API_CODES = {
    400: ("malformed_json",),
    401: ("invalid_signature",),
    404: ("link_expired",),
    503: ("storage_unavailable",),
}


def _problem_codes() -> dict[int, list[str]]:
    """Every problem code the API can answer with, by status."""
    codes: dict[int, list[str]] = {}

    def add(status: int, code: str) -> None:
        if code not in codes.setdefault(status, []):
            codes[status].append(code)

    for status, code in _HTTP_CODES.items():
        add(status, code)
    pending: list[type[domain_errors.EditqueueError]] = [domain_errors.EditqueueError]
    while pending:
        cls = pending.pop()
        add(cls.status, cls.code)
        pending.extend(cls.__subclasses__())
    for status, extra in _API_CODES.items():
        for code in extra:
            add(status, code)
    return codes


def _problem_response(status: int, codes: dict[int, list[str]]) -> dict[str, Any]:
    known = codes.get(status, [])
    types = ", ".join(f"`{PROBLEM_TYPE}{code}`" for code in known)
    description = _PROBLEM_TEXT.get(status, "Error")
    if types:
        description += f". Problem types: {types}."
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if known:
        out["content"]["application/problem+json"]["example"] = {
            "type": PROBLEM_TYPE + known[0],
            "title": known[0].replace("_", " ").capitalize(),
            "status": status,
            "detail": "what went wrong, for a person",
            "code": known[0],
            "errors": [],
        }
    return out


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route of the app."""
    models: set[type[BaseModel]] = {
        schemas.Problem,
        schemas.Job,
        schemas.Batch,
        schemas.WebhookEndpoint,
        schemas.BudgetThreshold,
    }
    codes = _problem_codes()
    extra_schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        op: Operation | None = getattr(view, "_openapi", None)
        if op is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                op, view, rule.rule, method, models, codes, extra_schemas
            )
    _, defs = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    component_schemas = defs.get("$defs", {})
    for name, build in extra_schemas.items():
        component_schemas[name] = build(component_schemas)
    webhooks = _webhooks(component_schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "editqueue",
            "version": "1",
            "description": "Asynchronous image edits across SeedEdit/Seedream vendors, with "
            "durable results and signed webhooks. Errors are RFC 9457 problem+json "
            "(`Problem`); authenticated responses carry RateLimit-* headers.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "jobs", "description": "Image-edit jobs: create, follow, cancel."},
            {"name": "batches", "description": "Many jobs sent as one request."},
            {"name": "webhooks", "description": "Webhook endpoints, secrets and deliveries."},
            {"name": "models", "description": "The model catalog and its limits."},
            {"name": "usage", "description": "Jobs, images and cost over time."},
            {"name": "callbacks", "description": "Vendor callbacks (not for clients)."},
            {"name": "operations", "description": "Health, readiness, metrics, this document."},
        ],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": component_schemas,
            "headers": RESPONSE_HEADERS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant API key (`Authorization: Bearer eq_…`).",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operator key (EDITQUEUE_ADMIN_KEY); /v1/admin only.",
                },
            },
        },
    }


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")


def _headers(names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {name: {"$ref": HEADER_REF.format(name=name)} for name in names}


def _description(op: Operation, view: Any) -> str:
    if op.description:
        return op.description
    doc = inspect.getdoc(view) or ""
    return doc or op.summary


def _operation(
    op: Operation,
    view: Any,
    rule: str,
    method: str,
    models: set[type[BaseModel]],
    codes: dict[int, list[str]],
    extra_schemas: dict[str, Any],
) -> dict[str, Any]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": f"The {name.replace('_', ' ')}.",
        }
        for name in _CONVERTER.findall(rule)
    ]
    op_id = f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', rule.lower()).strip('_')}"
    out: dict[str, Any] = {
        "summary": op.summary,
        "description": _description(op, view),
        "tags": op.tags,
        "operationId": op_id,
        "parameters": params + op.query + op.headers,
        "responses": {},
    }
    statuses: dict[int, type[BaseModel] | None] = dict(op.responses)
    if op.auth:
        out["security"] = [{op.security_scheme: []}]
        statuses.setdefault(401, None)
    rate_limited = 429 in statuses
    if op.body is not None:
        models.add(op.body)
        content: dict[str, Any] = {}
        for ct in op.body_content_types:
            if ct == "multipart/form-data":
                content[ct] = _multipart(op.body, extra_schemas)
            else:
                content[ct] = {"schema": {"$ref": REF.format(model=op.body.__name__)}}
        out["requestBody"] = {"required": True, "content": content}
    elif op.raw_body is not None:
        out["requestBody"] = op.raw_body
    for status in sorted(statuses):
        model = statuses[status]
        if status >= 400 and status not in op.raw_responses:
            response = _problem_response(status, codes)
            names: list[str] = list(_RATE_HEADERS) if rate_limited else []
            if status in (429, 503):
                names.append("Retry-After")
            if status == 401:
                names.append("WWW-Authenticate")
            if names:
                response["headers"] = _headers(names)
            out["responses"][str(status)] = response
            continue
        response = {
            "description": op.response_descriptions.get(status) or _STATUS_TEXT.get(status, "OK")
        }
        if model is not None:
            models.add(model)
            response["content"] = {
                "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
            }
        if status in op.extra_content:
            response.setdefault("content", {}).update(op.extra_content[status])
        if status in op.raw_responses:
            response.setdefault("content", {}).update(op.raw_responses[status])
        names = list(op.response_headers.get(status, ()))
        if status == 201 and "Location" not in names:
            names.insert(0, "Location")
        if rate_limited:
            names.extend(_RATE_HEADERS)
        if names:
            response["headers"] = _headers(names)
        out["responses"][str(status)] = response
    return out


def _multipart(body: type[BaseModel], extra_schemas: dict[str, Any]) -> dict[str, Any]:
    """The multipart/form-data variant of a JSON body: images as binary `image` parts."""
    name = f"{body.__name__}Multipart"

    def build(components: dict[str, Any]) -> dict[str, Any]:
        schema = copy.deepcopy(components[body.__name__])
        schema["title"] = name
        props = schema.get("properties", {})
        props.pop("image", None)
        schema["properties"] = {
            "image": {
                "type": "array",
                "items": {"type": "string", "format": "binary", "contentMediaType": "image/*"},
                "maxItems": 10,
                "description": "Image files, one `image` part each (PNG, JPEG or WebP, up to "
                "10 MB each); they count towards the 10 images with `images`.",
            },
            **props,
        }
        schema["description"] = (
            f"{schema.get('description', '')} As multipart/form-data: each field is a part; "
            "`n`, `seed`, `guidance_scale`, `watermark`, `deadline_seconds`, `metadata` and "
            "`provider_options` are JSON values; `images` and `webhook_events` repeat the part."
        ).strip()
        return schema

    extra_schemas[name] = build
    json_parts = ("metadata", "provider_options")
    return {
        "schema": {"$ref": REF.format(model=name)},
        "encoding": {
            "image": {"contentType": "image/png, image/jpeg, image/webp"},
            **{part: {"contentType": "application/json"} for part in json_parts},
        },
    }


_EVENT_TEXT = {
    "job.started": "A job's first vendor attempt began (opt-in: only endpoints and jobs that "
    "name it receive it).",
    "job.succeeded": "A job ended with its outputs stored; `data` is the Job with fresh links.",
    "job.failed": "A job ended in failure; `data.error` says why.",
    "job.canceled": "A job was canceled; late vendor results are discarded.",
    "batch.completed": "The last job of a batch ended; `data` is the Batch with final counts.",
    "webhook_endpoint.disabled": "An endpoint was disabled after failing for too long; "
    "`data` is the endpoint (without its secret).",
    "tenant.budget_threshold": "This month's spend (ended jobs' costs plus live jobs' "
    "reservations) reached the tenant's budget × alert ratio; fires once per calendar month "
    "(UTC). `data` is the BudgetThreshold.",
}

_WEBHOOK_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "The event id (`evt_…`), the same on every retry: deduplicate on it.",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "Unix seconds when this attempt was signed; refuse stale ones.",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": '`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret '
        "after `whsec_`; several space-separated during a secret rotation (Standard Webhooks).",
    },
]


def _event_model(event_type: str) -> str:
    if event_type.startswith("job."):
        return schemas.Job.__name__
    if event_type.startswith("batch."):
        return schemas.Batch.__name__
    if event_type == "tenant.budget_threshold":
        return schemas.BudgetThreshold.__name__
    return schemas.WebhookEndpoint.__name__


def _webhooks(components: dict[str, Any]) -> dict[str, Any]:
    """The `webhooks` section: one POST per event type, with its payload schema."""
    out: dict[str, Any] = {}
    for event_type in ENDPOINT_EVENT_TYPES:
        schema_name = "".join(p.capitalize() for p in re.split(r"[._]", event_type)) + "Event"
        components[schema_name] = {
            "type": "object",
            "title": schema_name,
            "description": f"Body of a `{event_type}` delivery.",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event_type, "description": "The event type."},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the event happened (RFC 3339, UTC).",
                },
                "data": {
                    "$ref": REF.format(model=_event_model(event_type)),
                    "description": "The object the event is about, as the API returns it.",
                },
            },
        }
        default = event_type in DEFAULT_JOB_EVENTS or not event_type.startswith("job.")
        out[event_type] = {
            "post": {
                "summary": f"`{event_type}` event",
                "description": _EVENT_TEXT.get(event_type, event_type)
                + (" Sent by default." if default else "")
                + " POSTed to each endpoint subscribed to it and to the job's `webhook_url`"
                " (job events); retried with backoff until a 2xx.",
                "operationId": f"webhook_{schema_name}",
                "tags": ["webhooks"],
                "parameters": _WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model=schema_name)}}
                    },
                },
                "responses": {
                    "2XX": {"description": "Received; any 2xx ends the delivery."},
                    "default": {"description": "Anything else (or no answer): retried later."},
                },
            }
        }
    return out
