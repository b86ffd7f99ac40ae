"""From an event to its deliveries: one row per (event, target), in the event's transaction.

Targets are the job's `webhook_url` (when it subscribed to the type) and every enabled
tenant endpoint subscribed to it. Each row is created leased, with an outbox message that
hands it to a worker after commit; if that message is lost, the lease runs out and the
sweep picks the row up. The body is frozen now, so every attempt sends the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from editqueue import tasknames
from editqueue.config import Settings
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.infra.storage import Storage
from editqueue.models import Delivery, Job, JobEvent, TenantEvent
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
) -> list[int]:
    """Insert the deliveries that do not exist yet; returns the outbox ids to publish."""
    ids = []
    lease_until = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=attempt_lease(settings.webhook_timeout)
    )
    for target in targets:
        lease = new_id("lse")
        # (event_id, url) is unique: re-running a fan-out (a replay) only fills the gaps.
        created = session.scalar(
            insert(Delivery)
            .values(
                id=new_id("dlv"),
                tenant_id=tenant_id,
                job_id=job_id,
                endpoint_id=target.endpoint_id,
                event_id=event_id,
                event_type=event_type,
                url=target.url,
                payload=body,
                state="pending",
                attempt=0,
                lease_id=lease,
                next_attempt_at=lease_until,
            )
            .on_conflict_do_nothing(constraint="uq_deliveries_event_url")
            .returning(Delivery.id)
        )
        if created is not None:
            ids.append(outbox.add(session, tasknames.DELIVER_WEBHOOK, created, lease))
    session.flush()
    return [m.id for m in ids]


def enqueue_job_event(
    session: Session, job: Job, event: JobEvent, *, storage: Storage, settings: Settings
) -> list[int]:
    """Create the deliveries of a job event (same transaction); returns outbox ids to publish."""
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
) -> tuple[TenantEvent, list[int]]:
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
