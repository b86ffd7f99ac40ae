"""Tenant webhook endpoints: create, read, update, delete, and who subscribes to what.

Every query is scoped to the tenant; another tenant's endpoint is reported as missing.
The signing secret is never part of the public shape unless the caller asks for it
(create and rotate answer with it; reads do not, so lists and logs cannot leak it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from editqueue.db import DriverStatement
from editqueue.errors import EndpointLimitReached, InvalidRequest, NotFound
from editqueue.ids import new_id
from editqueue.infra import netguard
from editqueue.models import Delivery, Tenant, WebhookEndpoint
from editqueue.serialize import timestamp
from editqueue.webhooks.signing import endpoint_wants, generate_secret


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", errors=[{"field": field, "message": message}])


def check_endpoint_url(url: str, allowed: Sequence[netguard.Network], field: str = "url") -> None:
    """422 unless `url` is http(s) and resolves only to addresses we may reach.

    Plain http is accepted only where private ranges are allowed (development), as for
    per-job webhook URLs.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "http"):
        raise _invalid(field, "must be an https URL")
    try:
        netguard.check_url(url, allowed)
    except netguard.UnsafeURL as exc:
        raise _invalid(field, f"is not allowed: {exc}") from None
    if scheme == "http" and not allowed:
        raise _invalid(field, "must use https")


def create_endpoint(
    session: Session,
    tenant_id: str,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
    allowed: Sequence[netguard.Network],
    max_endpoints: int,
) -> WebhookEndpoint:
    """A new enabled endpoint with its own `whsec_` secret, within the tenant's quota."""
    check_endpoint_url(url, allowed)
    _check_quota(session, tenant_id, max_endpoints)
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        tenant_id=tenant_id,
        url=url,
        description=description,
        events=list(dict.fromkeys(events)),
        secret=generate_secret(),
        disabled=False,
    )
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)  # server defaults (created_at, updated_at)
    return endpoint


def _check_quota(session: Session, tenant_id: str, max_endpoints: int) -> None:
    """Refuse a new endpoint past the quota.

    The tenant row is locked first so that concurrent creates on several API processes
    count one after another instead of all seeing room for one more.
    """
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
    )
    if (count or 0) >= max_endpoints:
        raise EndpointLimitReached(
            f"this tenant already has {count} webhook endpoints, the most allowed "
            f"(EDITQUEUE_MAX_WEBHOOK_ENDPOINTS={max_endpoints}); delete one first"
        )


def get_endpoint(session: Session, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The tenant's endpoint, or NotFound (also for another tenant's)."""
    endpoint = session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
        )
    )
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}")
    return endpoint


def list_endpoints(
    session: Session, tenant_id: str, *, limit: int, before_id: str | None
) -> tuple[list[WebhookEndpoint], bool]:
    """A page of the tenant's endpoints, newest first, and whether more follow."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
    if before_id:
        query = query.where(WebhookEndpoint.id < before_id)
    rows = list(session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def update_endpoint(
    session: Session,
    endpoint: WebhookEndpoint,
    changes: dict[str, Any],
    *,
    allowed: Sequence[netguard.Network],
) -> WebhookEndpoint:
    """Apply a PATCH (`url`, `events`, `description`, `disabled`); re-enabling forgives failures."""
    if "url" in changes:
        check_endpoint_url(changes["url"], allowed)
        endpoint.url = changes["url"]
    if "events" in changes:
        endpoint.events = list(dict.fromkeys(changes["events"]))
    if "description" in changes:
        endpoint.description = changes["description"]
    if "disabled" in changes and changes["disabled"] != endpoint.disabled:
        endpoint.disabled = changes["disabled"]
        endpoint.disabled_reason = "disabled through the API" if endpoint.disabled else None
        endpoint.failing_since = None
    endpoint.updated_at = dt.datetime.now(dt.UTC)
    session.flush()
    return endpoint


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint; its pending deliveries end as failed, its log stays."""
    session.execute(
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint.id, Delivery.state == "pending")
        .values(state="failed", next_attempt_at=None, error="not sent: the endpoint was deleted")
    )
    session.delete(endpoint)
    session.flush()


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An enabled endpoint that wants an event: all a fan-out needs of it."""

    id: str
    url: str


_ENABLED_ENDPOINTS = DriverStatement(
    "SELECT id, url, events FROM webhook_endpoints"
    " WHERE tenant_id = :tenant_id AND NOT disabled ORDER BY id"
)


def subscribed_endpoints(session: Session, tenant_id: str, event_type: str) -> list[Subscriber]:
    """The tenant's enabled endpoints that want this event type, oldest first."""
    rows = _ENABLED_ENDPOINTS.execute(session, {"tenant_id": tenant_id})
    return [
        Subscriber(id_, url)
        for id_, url, events in rows
        if endpoint_wants(events or [], event_type)
    ]


def endpoint_to_public(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    """The WebhookEndpoint object; `secret` only when the owner just created or rotated it."""
    body: dict[str, Any] = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events or []),
        "disabled": endpoint.disabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": timestamp(endpoint.failing_since),
        "created_at": timestamp(endpoint.created_at),
        "updated_at": timestamp(endpoint.updated_at),
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body
