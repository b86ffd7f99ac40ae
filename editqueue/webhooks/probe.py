"""`webhook.test`: a sample event sent to one endpoint, to check it receives and verifies."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from editqueue.config import Settings
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.models import TenantEvent, WebhookEndpoint
from editqueue.serialize import timestamp
from editqueue.webhooks.fanout import Target, add_deliveries
from editqueue.webhooks.replay import EndpointDisabled
from editqueue.webhooks.signing import event_body

TEST_EVENT = "webhook.test"


def send_test_event(
    session: Session, endpoint: WebhookEndpoint, *, settings: Settings
) -> tuple[TenantEvent, list[outbox.Message]]:
    """Record a `webhook.test` event and one delivery of it to `endpoint` only (signed and
    retried like any other); returns the event and the messages to publish after commit."""
    if endpoint.disabled:
        raise EndpointDisabled(f"endpoint {endpoint.id} is disabled; enable it first")
    now = dt.datetime.now(dt.UTC)
    data = {"object": "webhook_test", "endpoint_id": endpoint.id, "message": "a test event"}
    event = TenantEvent(
        id=new_id("evt"), tenant_id=endpoint.tenant_id, type=TEST_EVENT, data=data, at=now
    )
    session.add(event)
    session.flush()
    ids = add_deliveries(
        session,
        tenant_id=endpoint.tenant_id,
        job_id=None,
        event_id=event.id,
        event_type=TEST_EVENT,
        body=event_body(TEST_EVENT, timestamp(now) or "", data),
        targets=[Target(endpoint.url, endpoint.id)],
        settings=settings,
    )
    return event, ids
