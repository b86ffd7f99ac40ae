"""Endpoint health: a run of failures, and disabling (at once on 410, or after 5 days).

`failing_since` marks the start of the current run of failed attempts and any success
clears it, so "failing every attempt for 5 days" is one comparison. Disabling is a
conditional UPDATE, so it happens once, and records a `webhook_endpoint.disabled` tenant
event that goes to the tenant's other subscribed endpoints (never to the disabled one).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from editqueue import logs
from editqueue.config import Settings
from editqueue.infra import outbox
from editqueue.models import WebhookEndpoint
from editqueue.webhooks.endpoints import endpoint_to_public
from editqueue.webhooks.fanout import record_tenant_event
from editqueue.webhooks.sender import AttemptResult

log = logging.getLogger(__name__)

DISABLED_EVENT = "webhook_endpoint.disabled"


def disable_endpoint(
    session: Session, endpoint_id: str, reason: str, *, settings: Settings
) -> list[outbox.Message]:
    """Disable an enabled endpoint and announce it; returns messages (none if already off)."""
    endpoint = session.scalars(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.disabled.is_(False))
        .values(disabled=True, disabled_reason=reason, updated_at=func.now())
        .returning(WebhookEndpoint)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()
    if endpoint is None:
        return []
    log.warning(
        "webhook.endpoint.disabled", extra=logs.fields(endpoint_id=endpoint.id, reason=reason)
    )
    _, ids = record_tenant_event(
        session, endpoint.tenant_id, DISABLED_EVENT, endpoint_to_public(endpoint), settings=settings
    )
    return ids


def note_outcome(
    session: Session, endpoint_id: str, result: AttemptResult, *, settings: Settings
) -> list[outbox.Message]:
    """Track the endpoint's run of failures after an attempt; returns messages to publish."""
    if result.ok:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return []
    if result.status_code == 410:
        return disable_endpoint(
            session, endpoint_id, "the endpoint answered 410 Gone", settings=settings
        )
    failing_since = session.scalar(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, func.now()))
        .returning(WebhookEndpoint.failing_since)
    )
    limit = dt.timedelta(seconds=settings.webhook_disable_after)
    if failing_since is not None and dt.datetime.now(dt.UTC) - failing_since >= limit:
        days = limit.total_seconds() / 86_400
        return disable_endpoint(
            session,
            endpoint_id,
            f"every delivery attempt failed for {days:g} days",
            settings=settings,
        )
    return []
