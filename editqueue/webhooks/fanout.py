"""From an event to its deliveries: one row per (event, target), in the event's transaction.

Targets are the job's `webhook_url` (when it subscribed to the type) and every enabled
tenant endpoint subscribed to it. Each row is created leased and handed to a worker by a
message published after commit (`outbox.Leased`: the row is its own outbox); if that
message is lost, the lease runs out and the sweep picks the row up. The body is frozen
now, so every attempt sends the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from editqueue import tasknames
from editqueue.config import Settings
from editqueue.db import DriverStatement
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.infra.storage import Storage
from editqueue.models import Job, JobEvent, TenantEvent
from editqueue.serialize import job_to_public, timestamp
from editqueue.webhooks.endpoints import subscribed_endpoints
from editqueue.webhooks.signing import attempt_lease, event_body

# Signed links inside a webhook body must outlive the retry schedule's first day.
PAYLOAD_LINK_TTL = 86_400


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: a URL, and the endpoint it belongs to (None = per-job URL)."""

    url: str
    endpoint_id: str | None


def job_event_targets(session: Session, job: Job, event_type: str) -> list[Target]:
    """The targets of a job event; an endpoint wins over a per-job URL with the same address."""
    targets = [
        Target(e.url, e.id) for e in subscribed_endpoints(session, job.tenant_id, event_type)
    ]
    taken = {t.url for t in targets}
    if (
        job.webhook_url
        and event_type in (job.webhook_events or [])
        and job.webhook_url not in taken
    ):
        targets.append(Target(job.webhook_url, None))
    return targets


# All of an event's targets in one INSERT. (event_id, url) is unique: re-running a fan-out
# (a replay) only fills the gaps, and of two targets with the same URL the first (in the
# order given, kept by the ordinality) is the one created.
_ADD_DELIVERIES = DriverStatement(
    "INSERT INTO deliveries (id, tenant_id, job_id, endpoint_id, event_id, event_type, url,"
    " payload, state, attempt, lease_id, next_attempt_at)"
    " SELECT t.id, :tenant_id, :job_id, t.endpoint_id, :event_id, :event_type, t.url,"
    " :payload, 'pending', 0, t.lease_id, :lease_until"
    " FROM unnest(CAST(:ids AS text[]), CAST(:urls AS text[]),"
    "   CAST(:endpoint_ids AS text[]), CAST(:leases AS text[]))"
    "   WITH ORDINALITY AS t(id, url, endpoint_id, lease_id, n)"
    " ORDER BY t.n"
    " ON CONFLICT ON CONSTRAINT uq_deliveries_event_url DO NOTHING"
    " RETURNING id"
)


def add_deliveries(
    session: Session,
    *,
    tenant_id: str,
    job_id: str | None,
    event_id: str,
    event_type: str,
    body: str,
    targets: list[Target],
    settings: Settings,
) -> list[outbox.Message]:
    """Insert the deliveries that do not exist yet; returns the messages to publish."""
    if not targets:
        return []
    lease_until = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=attempt_lease(settings.webhook_timeout)
    )
    planned = [(new_id("dlv"), new_id("lse")) for _ in targets]
    params = {
        "tenant_id": tenant_id,
        "job_id": job_id,
        "event_id": event_id,
        "event_type": event_type,
        "payload": body,
        "lease_until": lease_until,
        "ids": [delivery_id for delivery_id, _ in planned],
        "leases": [lease for _, lease in planned],
        "urls": [t.url for t in targets],
        "endpoint_ids": [t.endpoint_id for t in targets],
    }
    created = {row[0] for row in _ADD_DELIVERIES.execute(session, params)}
    return [
        outbox.Leased(tasknames.DELIVER_WEBHOOK, (delivery_id, lease))
        for delivery_id, lease in planned
        if delivery_id in created
    ]


def enqueue_job_event(
    session: Session, job: Job, event: JobEvent, *, storage: Storage, settings: Settings
) -> list[outbox.Message]:
    """Create the deliveries of a job event (same transaction); returns messages to publish."""
    targets = job_event_targets(session, job, event.type)
    if not targets:
        return []
    data = job_to_public(job, storage, link_ttl=PAYLOAD_LINK_TTL)
    return add_deliveries(
        session,
        tenant_id=job.tenant_id,
        job_id=job.id,
        event_id=event.id,
        event_type=event.type,
        body=event_body(event.type, timestamp(event.at) or "", data),
        targets=targets,
        settings=settings,
    )


def record_tenant_event(
    session: Session, tenant_id: str, type_: str, data: dict[str, Any], *, settings: Settings
) -> tuple[TenantEvent, list[outbox.Message]]:
    """Record an event about the tenant and create its deliveries to subscribed endpoints."""
    event = TenantEvent(
        id=new_id("evt"), tenant_id=tenant_id, type=type_, data=data, at=dt.datetime.now(dt.UTC)
    )
    session.add(event)
    session.flush()
    targets = [Target(e.url, e.id) for e in subscribed_endpoints(session, tenant_id, type_)]
    ids = add_deliveries(
        session,
        tenant_id=tenant_id,
        job_id=None,
        event_id=event.id,
        event_type=type_,
        body=event_body(type_, timestamp(event.at) or "", data),
        targets=targets,
        settings=settings,
    )
    return event, ids
