"""Sending again on request: a job's latest event now, or an endpoint's failed events since T.

A replay re-arms existing delivery rows (same `webhook-id`, same frozen body, the attempt
count carries on) rather than creating new events, so receivers deduplicating on
`webhook-id` stay correct. A re-armed delivery gets what is left of the schedule: a
delivery whose schedule was spent gets exactly one more attempt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import tasknames
from editqueue.config import Settings
from editqueue.errors import Conflict, InvalidRequest
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.infra.storage import Storage
from editqueue.models import Delivery, Job, JobEvent, WebhookEndpoint
from editqueue.tasknames import RECOVER_ENDPOINT
from editqueue.webhooks.fanout import enqueue_job_event
from editqueue.webhooks.signing import JOB_EVENT_TYPES, attempt_lease

RECOVER_CHUNK = 200


class NothingToResend(Conflict):
    """The job has no webhook event yet (it has not started)."""

    code = "no_webhook_event"
    title = "Nothing to re-send"


class EndpointDisabled(Conflict):
    """The endpoint is disabled; enable it before recovering its deliveries."""

    code = "endpoint_disabled"
    title = "Endpoint disabled"


def _rearm(session: Session, query: Select, lease_seconds: float) -> list[tuple[str, int]]:
    """Make the selected deliveries pending and due now; returns (id, outbox id) pairs."""
    rows = session.execute(query.with_for_update(skip_locked=True, of=Delivery)).scalars().all()
    armed = []
    for delivery_id in rows:
        lease = new_id("lse")
        session.execute(
            text(
                "UPDATE deliveries SET state = 'pending', lease_id = :lease,"
                " next_attempt_at = now() + make_interval(secs => :secs) WHERE id = :id"
            ),
            {"lease": lease, "secs": lease_seconds, "id": delivery_id},
        )
        message = outbox.add(session, tasknames.DELIVER_WEBHOOK, delivery_id, lease)
        armed.append((delivery_id, message))
    session.flush()
    return [(delivery_id, message.id) for delivery_id, message in armed]


def _live_target(job: Job) -> ColumnElement[bool]:
    """Deliveries that still have somewhere to go: an enabled endpoint, or the job's URL."""
    enabled = select(WebhookEndpoint.id).where(
        WebhookEndpoint.id == Delivery.endpoint_id, WebhookEndpoint.disabled.is_(False)
    )
    return or_(
        enabled.exists(),
        and_(Delivery.endpoint_id.is_(None), Delivery.url == (job.webhook_url or "")),
    )


def resend_latest_job_event(
    session: Session, job: Job, *, storage: Storage, settings: Settings
) -> tuple[list[Delivery], list[outbox.Message]]:
    """Re-send the job's latest webhook event to all its current targets, now.

    Targets added since the event (a new endpoint) get a delivery too. Returns the
    deliveries and the messages to publish after commit.
    """
    event = session.scalar(
        select(JobEvent)
        .where(JobEvent.job_id == job.id, JobEvent.type.in_(JOB_EVENT_TYPES))
        .order_by(JobEvent.id.desc())
        .limit(1)
    )
    if event is None:
        raise NothingToResend(f"job {job.id} has no webhook event to re-send yet")
    created = enqueue_job_event(session, job, event, storage=storage, settings=settings)
    resendable = select(Delivery.id).where(
        Delivery.event_id == event.id,
        # Rows whose first attempt is on its way (just created ones too) need nothing.
        or_(Delivery.state != "pending", Delivery.attempt > 0),
        _live_target(job),
    )
    armed = _rearm(session, resendable, attempt_lease(settings.webhook_timeout))
    deliveries = list(
        session.scalars(
            select(Delivery)
            .where(Delivery.event_id == event.id)
            .order_by(Delivery.id)
            .execution_options(populate_existing=True)
        )
    )
    return deliveries, created + [message for _, message in armed]


def request_recovery(
    session: Session,
    endpoint: WebhookEndpoint,
    since: dt.datetime,
    until: dt.datetime | None,
) -> list[outbox.Message]:
    """Queue the background re-send of the endpoint's failed deliveries in [since, until)."""
    if endpoint.disabled:
        raise EndpointDisabled(
            f"webhook endpoint {endpoint.id} is disabled; enable it (PATCH disabled=false) first"
        )
    # In UTC before anything is written: the worker and the answer both read them so.
    since_utc = _in_utc(since, "since")
    until_utc = _in_utc(until, "until") if until else None
    message = outbox.add(
        session,
        RECOVER_ENDPOINT,
        endpoint.id,
        since_utc.isoformat(),
        until_utc.isoformat() if until_utc else None,
    )
    session.flush()
    return [message.id]


def _in_utc(value: dt.datetime, field: str) -> dt.datetime:
    """`value` (naive means UTC) in UTC; InvalidRequest when UTC cannot hold it."""
    try:
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    except OverflowError:
        raise InvalidRequest(
            f"{field} is out of range once in UTC",
            errors=[{"field": field, "message": "out of range (years 1–9999 in UTC)"}],
        ) from None


def _failed_in_window(
    endpoint_id: str,
    since: dt.datetime,
    until: dt.datetime | None,
    after_id: str,
    limit: int,
) -> Select:
    """Ids of an endpoint's failed deliveries created in the window, after a cursor."""
    query = select(Delivery.id).where(
        Delivery.endpoint_id == endpoint_id,
        Delivery.state == "failed",
        Delivery.created_at >= since,
        Delivery.id > after_id,
    )
    if until is not None:
        query = query.where(Delivery.created_at < until)
    return query.order_by(Delivery.id).limit(limit)


def recover_endpoint(
    factory: sessionmaker[Session],
    publish: Callable[[list[outbox.Message]], None],
    endpoint_id: str,
    since: dt.datetime,
    until: dt.datetime | None,
    *,
    settings: Settings,
    chunk: int = RECOVER_CHUNK,
) -> int:
    """Re-arm the endpoint's failed deliveries in [since, until), committing per chunk.

    Walks the deliveries by id, so one failing again meanwhile is not picked up twice;
    stops if the endpoint is disabled or deleted midway. Returns how many were re-armed.
    """
    total, after_id = 0, ""
    while True:
        with factory() as session, session.begin():
            if not _endpoint_enabled(session, endpoint_id):
                return total
            query = _failed_in_window(endpoint_id, since, until, after_id, chunk)
            armed = _rearm(session, query, attempt_lease(settings.webhook_timeout))
        publish([message for _, message in armed])
        total += len(armed)
        if len(armed) < chunk:
            return total
        after_id = armed[-1][0]


def _endpoint_enabled(session: Session, endpoint_id: str) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.disabled.is_(False))
        )
    )
