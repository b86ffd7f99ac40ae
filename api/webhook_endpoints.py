"""`/v1/webhook-endpoints`: the tenant's webhook endpoints and their signing secrets."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel

from api.auth import current_tenant_id
from api.bodies import json_object
from api.openapi import operation, query_param
from api.params import page_limit
from api.state import db, services
from editqueue.models import WebhookEndpoint
from editqueue.schemas import WebhookEndpoint as WebhookEndpointSchema
from editqueue.schemas import (
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointUpdate,
    WebhookSecret,
)
from editqueue.webhooks import endpoints
from editqueue.webhooks.log import decode_cursor, encode_cursor
from editqueue.webhooks.secrets import rotate_endpoint_secret

bp = Blueprint("webhook_endpoints", __name__, url_prefix="/v1/webhook-endpoints")

Body = TypeVar("Body", bound=BaseModel)

LIMIT_QUERY = query_param(
    "limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size, 1–200"
)
CURSOR_QUERY = query_param("cursor", {"type": "string"}, "next_cursor of the previous page")


# -- request helpers (shared with api.deliveries) ----------------------------------------


def json_body(model: type[Body]) -> Body:
    """The request's JSON body validated against `model` (400 if not JSON, 422 if invalid)."""
    body, _ = json_object(empty_is_object=True)
    return model.model_validate(body)  # a ValidationError becomes a 422 with errors[].field


def load_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """The current tenant's endpoint, or 404."""
    return endpoints.get_endpoint(db(), current_tenant_id(), endpoint_id)


def _answer(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    return endpoints.endpoint_to_public(endpoint, with_secret=with_secret)


# -- routes ----------------------------------------------------------------------------------


@bp.post("")
@operation(
    "Create a webhook endpoint",
    tags=["webhooks"],
    body=WebhookEndpointCreate,
    responses={201: WebhookEndpointSchema, 400: None, 409: None, 422: None},
)
def create() -> tuple[Response, int, dict[str, str]]:
    """A new endpoint; the answer carries its `whsec_` secret."""
    spec = json_body(WebhookEndpointCreate)
    session = db()
    endpoint = endpoints.create_endpoint(
        session,
        current_tenant_id(),
        url=spec.url,
        events=spec.events,
        description=spec.description,
        allowed=services().settings.allow_private_urls,
        max_endpoints=services().settings.max_webhook_endpoints,
    )
    session.commit()
    location = f"/v1/webhook-endpoints/{endpoint.id}"
    return jsonify(_answer(endpoint, with_secret=True)), 201, {"Location": location}


@bp.get("")
@operation(
    "List webhook endpoints, newest first",
    tags=["webhooks"],
    responses={200: WebhookEndpointList, 422: None},
    query=[LIMIT_QUERY, CURSOR_QUERY],
)
def list_() -> Response:
    """Cursor-paged like `GET /v1/jobs`; secrets are not included."""
    limit = page_limit()
    cursor = request.args.get("cursor")
    before = decode_cursor(cursor, prefix="whe") if cursor else None
    rows, more = endpoints.list_endpoints(db(), current_tenant_id(), limit=limit, before_id=before)
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return jsonify({"data": [_answer(e) for e in rows], "next_cursor": next_cursor})


@bp.get("/<endpoint_id>")
@operation(
    "Get a webhook endpoint",
    tags=["webhooks"],
    responses={200: WebhookEndpointSchema, 404: None},
)
def get(endpoint_id: str) -> Response:
    """One endpoint, without its secret (see `…/secret`)."""
    return jsonify(_answer(load_endpoint(endpoint_id)))


@bp.patch("/<endpoint_id>")
@operation(
    "Update a webhook endpoint",
    tags=["webhooks"],
    body=WebhookEndpointUpdate,
    responses={200: WebhookEndpointSchema, 400: None, 404: None, 422: None},
)
def update(endpoint_id: str) -> Response:
    """Change url, events, description; `disabled: false` re-enables a disabled endpoint."""
    endpoint = load_endpoint(endpoint_id)
    changes = json_body(WebhookEndpointUpdate).changes()
    allowed = services().settings.allow_private_urls
    endpoints.update_endpoint(db(), endpoint, changes, allowed=allowed)
    db().commit()
    return jsonify(_answer(endpoint))


@bp.delete("/<endpoint_id>")
@operation("Delete a webhook endpoint", tags=["webhooks"], responses={204: None, 404: None})
def delete(endpoint_id: str) -> tuple[str, int]:
    """Delete it; pending deliveries to it end as failed, the delivery log stays."""
    endpoints.delete_endpoint(db(), load_endpoint(endpoint_id))
    db().commit()
    return "", 204


@bp.post("/<endpoint_id>/rotate-secret")
@operation(
    "Rotate a webhook endpoint's secret",
    tags=["webhooks"],
    responses={200: WebhookEndpointSchema, 404: None},
)
def rotate_secret(endpoint_id: str) -> Response:
    """A new secret; the old one keeps signing too during the overlap (24 h by default)."""
    endpoint = load_endpoint(endpoint_id)
    rotate_endpoint_secret(
        endpoint, dt.datetime.now(dt.UTC), overlap=services().settings.webhook_rotation_overlap
    )
    db().commit()
    return jsonify(_answer(endpoint, with_secret=True))


@bp.get("/<endpoint_id>/secret")
@operation(
    "A webhook endpoint's signing secret",
    tags=["webhooks"],
    responses={200: WebhookSecret, 404: None},
)
def secret(endpoint_id: str) -> Response:
    """The endpoint's current `whsec_…` secret, kept out of list and get answers."""
    return jsonify({"secret": load_endpoint(endpoint_id).secret})
