"""The delivery engine: hand out due attempts, send one, record it, schedule the next.

Attempt times live in PostgreSQL (`deliveries.next_attempt_at`), never in broker
countdowns: a beat sweep leases due rows and hands them to workers; a worker claims a
row by its lease, sends outside any transaction, then records the outcome, one
`delivery_attempts` row per POST. A lost message or a dead worker only delays an
attempt until its lease runs out.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random

import httpx
from sqlalchemy import Update, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.config import Settings
from editqueue.ids import new_id
from editqueue.models import Delivery, DeliveryAttempt, JobEvent
from editqueue.webhooks import health as webhook_health
from editqueue.webhooks.limits import TargetLimiter
from editqueue.webhooks.limits import max_in_flight as target_cap
from editqueue.webhooks.secrets import Destination, delivery_destination
from editqueue.webhooks.sender import AttemptResult, post_signed
from editqueue.webhooks.signing import attempt_lease, next_delay

log = logging.getLogger(__name__)


def sweep_due(session: Session, *, limit: int, lease_seconds: float) -> list[tuple[str, str]]:
    """Lease pending deliveries whose attempt time has come."""
    rows = session.execute(
        text(
            "UPDATE deliveries SET lease_id = gen_random_uuid()::text,"
            " next_attempt_at = now() + make_interval(secs => :lease)"
            " WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending'"
            "   AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT :limit"
            "   FOR UPDATE SKIP LOCKED)"
            " RETURNING id, lease_id"
        ),
        {"limit": limit, "lease": lease_seconds},
    ).all()
    return [(r.id, r.lease_id) for r in rows]


@functools.cache
def process_limiter(concurrency: int, max_in_flight: int | None) -> TargetLimiter:
    """The worker process's per-target fence (one per process, sized from its concurrency).

    A quarter of the threads (or `max_in_flight`, `EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT`) for a
    target not known to be quick, half for a quick one.
    """
    limit = target_cap(concurrency, max_in_flight)
    return TargetLimiter(limit, quick_limit=max(limit, concurrency // 2))


def _claim(session: Session, delivery_id: str, lease_id: str, lease: float) -> Delivery | None:
    """Take the attempt a sweep or fan-out handed out; a duplicate message finds nothing."""
    return session.scalars(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.lease_id == lease_id,
            Delivery.state == "pending",
        )
        .values(lease_id=None, next_attempt_at=func.now() + dt.timedelta(seconds=lease))
        .returning(Delivery)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()


def _still_pending(delivery_id: str) -> Update:
    """An UPDATE of the delivery that does nothing once it has ended."""
    return update(Delivery).where(Delivery.id == delivery_id, Delivery.state == "pending")


def _put_back(factory: sessionmaker[Session], delivery_id: str, delay: float) -> None:
    """Return a claimed delivery to the sweep for later, without counting an attempt."""
    with factory() as session, session.begin():
        session.execute(
            _still_pending(delivery_id).values(
                next_attempt_at=func.now() + dt.timedelta(seconds=delay)
            )
        )


def _next_state(
    result: AttemptResult, attempt: int, settings: Settings
) -> tuple[str, dt.datetime | None]:
    """The delivery's state after this attempt, and when the next one is due."""
    if result.ok:
        return "succeeded", None
    if result.permanent:
        return "failed", None
    delay = next_delay(settings.webhook_schedule, attempt, result.retry_after)
    if delay is None:
        return "failed", None
    return "pending", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)


def _record(
    factory: sessionmaker[Session],
    delivery: Delivery,
    destination: Destination,
    result: AttemptResult,
    settings: Settings,
) -> str:
    """Store the attempt and its outcome; returns the delivery's new state."""
    attempt = delivery.attempt + 1
    state, next_at = _next_state(result, attempt, settings)
    with factory() as session, session.begin():
        session.execute(
            _still_pending(delivery.id).values(
                state=state,
                attempt=attempt,
                next_attempt_at=next_at,
                status_code=result.status_code,
                response_ms=result.response_ms,
                response_body=result.body,
                error=result.error,
                last_attempt_at=func.now(),
            )
        )
        session.add(
            DeliveryAttempt(
                delivery_id=delivery.id,
                attempt=attempt,
                status_code=result.status_code,
                response_ms=result.response_ms,
                response_body=result.body,
                error=result.error,
            )
        )
        if delivery.job_id:
            session.add(_job_event(delivery, attempt, result, state))
        # A success to a healthy endpoint changes nothing about its health: skip the trip.
        if delivery.endpoint_id and (not result.ok or destination.failing):
            # Announcements of a disabled endpoint go out through the outbox relay.
            webhook_health.note_outcome(session, delivery.endpoint_id, result, settings=settings)
    log.info(
        "webhook.delivery.attempted",
        extra=logs.fields(
            delivery_id=delivery.id,
            attempt=attempt,
            status_code=result.status_code,
            error=result.error,
            state=state,
        ),
    )
    return state


def _job_event(delivery: Delivery, attempt: int, result: AttemptResult, state: str) -> JobEvent:
    """The attempt in the job's audit trail."""
    return JobEvent(
        id=new_id("evt"),
        job_id=delivery.job_id,
        tenant_id=delivery.tenant_id,
        type="webhook.attempt",
        detail={
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "attempt": attempt,
            "status_code": result.status_code,
            "error": result.error,
            "state": state,
        },
        at=dt.datetime.now(dt.UTC),
    )


def attempt_delivery(
    factory: sessionmaker[Session],
    delivery_id: str,
    lease_id: str,
    *,
    client: httpx.Client,
    settings: Settings,
    limiter: TargetLimiter | None = None,
) -> str | None:
    """Claim a delivery by its lease, send it, record the outcome; returns the new state.

    `client` must be the SSRF-guarded client. None means the lease was gone (a duplicate).
    """
    limiter = limiter or process_limiter(
        settings.worker_concurrency, settings.webhook_max_in_flight
    )
    with factory() as session, session.begin():
        delivery = _claim(session, delivery_id, lease_id, attempt_lease(settings.webhook_timeout))
        if delivery is None:
            return None
        destination = _destination(session, delivery)
        if destination is None:
            return "failed"
    target = delivery.endpoint_id or delivery.url
    with limiter.slot(target) as acquired:
        if not acquired:
            delay = limiter.busy_delay(target, settings.webhook_timeout)
            _put_back(factory, delivery.id, delay * random.uniform(1.0, 1.5))
            return "pending"
        result = post_signed(
            client,
            destination.url,
            event_id=delivery.event_id,
            payload=delivery.payload,
            secrets=destination.secrets,
            allowed=settings.allow_private_urls,
            timeout=settings.webhook_timeout,
        )
    return _record(factory, delivery, destination, result, settings)


def _end_unsent(session: Session, delivery_id: str, reason: str) -> None:
    session.execute(
        _still_pending(delivery_id).values(
            state="failed", next_attempt_at=None, error=f"not sent: {reason}"
        )
    )


def _destination(session: Session, delivery: Delivery) -> Destination | None:
    """Where the claimed delivery goes now; ends it (failed, unsent) if nowhere."""
    destination = delivery_destination(session, delivery, dt.datetime.now(dt.UTC))
    if destination is None:
        _end_unsent(session, delivery.id, "the endpoint is disabled or was deleted")
        return None
    if destination.url != delivery.url:
        # The endpoint's URL changed since the event; the log follows it. (event, url) is
        # unique: if the event already goes to the new URL another way, this copy ends.
        taken = session.scalar(
            select(Delivery.id).where(
                Delivery.event_id == delivery.event_id, Delivery.url == destination.url
            )
        )
        if taken is not None:
            _end_unsent(session, delivery.id, f"the event already goes to this URL ({taken})")
            return None
        session.execute(_still_pending(delivery.id).values(url=destination.url))
    return destination
