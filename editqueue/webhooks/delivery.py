"""The delivery engine: hand out due attempts, send one, record it, schedule the next.

Attempt times live in PostgreSQL (`deliveries.next_attempt_at`), never in broker
countdowns: a beat sweep leases due rows and hands them to workers; a worker claims a
row by its lease, sends outside any transaction, then records the outcome, one
`delivery_attempts` row per POST. A lost message or a dead worker only delays an
attempt until its lease runs out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.config import Settings
from editqueue.db import DriverStatement, autocommit
from editqueue.ids import new_id
from editqueue.webhooks import health as webhook_health
from editqueue.webhooks.limits import TargetLimiter
from editqueue.webhooks.limits import max_in_flight as target_cap
from editqueue.webhooks.secrets import Destination, delivery_destination
from editqueue.webhooks.sender import AttemptResult, post_signed
from editqueue.webhooks.signing import attempt_lease, next_delay

log = logging.getLogger(__name__)


_SWEEP_DUE = text(
    "UPDATE deliveries SET lease_id = gen_random_uuid()::text,"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending'"
    "   AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT :limit"
    "   FOR UPDATE SKIP LOCKED)"
    " RETURNING id, lease_id"
)


def sweep_due(session: Session, *, limit: int, lease_seconds: float) -> list[tuple[str, str]]:
    """Lease pending deliveries whose attempt time has come."""
    rows = session.execute(_SWEEP_DUE, {"limit": limit, "lease": lease_seconds}).all()
    return [(r.id, r.lease_id) for r in rows]


@functools.cache
def process_limiter(concurrency: int, max_in_flight: int | None) -> TargetLimiter:
    """The worker process's per-target fence (one per process, sized from its concurrency).

    A quarter of the threads (or `max_in_flight`, `EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT`) for a
    target not known to be quick, half for a quick one.
    """
    limit = target_cap(concurrency, max_in_flight)
    return TargetLimiter(limit, quick_limit=max(limit, concurrency // 2))


def _process_fence(settings: Settings) -> TargetLimiter:
    return process_limiter(settings.worker_concurrency, settings.webhook_max_in_flight)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What an attempt needs of the delivery it claimed (a plain copy, not an ORM row)."""

    id: str
    tenant_id: str
    job_id: str | None
    endpoint_id: str | None
    event_id: str
    url: str
    payload: str
    attempt: int


_CLAIM = DriverStatement(
    "UPDATE deliveries SET lease_id = NULL,"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE id = :id AND lease_id = :lease_id AND state = 'pending'"
    " RETURNING id, tenant_id, job_id, endpoint_id, event_id, url, payload, attempt"
)


def _claim(session: Session, delivery_id: str, lease_id: str, lease: float) -> Claimed | None:
    """Take the attempt a sweep or fan-out handed out; a duplicate message finds nothing."""
    row = _CLAIM.execute(
        session, {"id": delivery_id, "lease_id": lease_id, "lease": lease}
    ).fetchone()
    return None if row is None else Claimed(*row)


# Every later write to a claimed delivery is guarded by `state = 'pending'`: once it has
# ended (succeeded, failed, its endpoint deleted) nothing here may bring it back.
_PUT_BACK = text(
    "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => :delay)"
    " WHERE id = :id AND state = 'pending'"
)
_END_UNSENT = text(
    "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, error = :error"
    " WHERE id = :id AND state = 'pending'"
)
_FOLLOW_URL = text("UPDATE deliveries SET url = :url WHERE id = :id AND state = 'pending'")
_URL_TAKEN = text("SELECT id FROM deliveries WHERE event_id = :event_id AND url = :url")


def _put_back(factory: sessionmaker[Session], delivery_id: str, delay: float) -> None:
    """Return a claimed delivery to the sweep for later, without counting an attempt."""
    with factory() as session, session.begin():
        session.execute(_PUT_BACK, {"id": delivery_id, "delay": delay})


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


# The outcome, the attempt log and the job's trail in one round trip. The two INSERTs run
# even when the UPDATE matches nothing (the delivery ended while the POST was in flight:
# its endpoint was deleted, or an overtaking attempt ended it): the POST was made and the
# receiver may have acted on it, so the log keeps one row per POST, while the guard keeps
# an ended delivery from coming back to life. A WITH's data-modifying statements always
# run to completion, read or not; the job event is written only for a job's delivery.
_RECORD = DriverStatement(
    "WITH outcome AS ("
    "   UPDATE deliveries SET state = :state, attempt = :attempt, next_attempt_at = :next_at,"
    "   status_code = :status_code, response_ms = :response_ms, response_body = :body,"
    "   error = :error, last_attempt_at = now()"
    "   WHERE id = :id AND state = 'pending'),"
    " logged AS ("
    "   INSERT INTO delivery_attempts"
    "   (delivery_id, attempt, status_code, response_ms, response_body, error)"
    "   VALUES (:id, :attempt, :status_code, :response_ms, :body, :error))"
    " INSERT INTO job_events (id, job_id, tenant_id, type, terminal, detail, at)"
    " SELECT :event_id, CAST(:job_id AS varchar), :tenant_id, 'webhook.attempt', false,"
    "   :detail, CAST(:at AS timestamptz)"
    " WHERE CAST(:job_id AS varchar) IS NOT NULL",
    json=["detail"],
)


def _record(
    factory: sessionmaker[Session],
    delivery: Claimed,
    destination: Destination,
    result: AttemptResult,
    settings: Settings,
) -> str:
    """Store the attempt and its outcome; returns the delivery's new state."""
    attempt = delivery.attempt + 1
    state, next_at = _next_state(result, attempt, settings)
    values: dict[str, Any] = {
        "id": delivery.id,
        "state": state,
        "attempt": attempt,
        "next_at": next_at,
        "status_code": result.status_code,
        "response_ms": result.response_ms,
        "body": result.body,
        "error": result.error,
        "job_id": delivery.job_id,
        "tenant_id": delivery.tenant_id,
        "event_id": None,
        "detail": None,
        "at": None,
    }
    if delivery.job_id:
        values.update(
            event_id=new_id("evt"),
            detail=_job_event_detail(delivery, attempt, result, state),
            at=dt.datetime.now(dt.UTC),
        )
    # A success to a healthy endpoint changes nothing about its health: skip the trip, and
    # the one statement left needs no transaction around it.
    if delivery.endpoint_id and (not result.ok or destination.failing):
        with factory() as session, session.begin():
            _RECORD.execute(session, values)
            # Announcements of a disabled endpoint go out through the outbox relay.
            webhook_health.note_outcome(session, delivery.endpoint_id, result, settings=settings)
    else:
        with autocommit(factory) as connection:
            _RECORD.execute(connection, values)
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


def _job_event_detail(
    delivery: Claimed, attempt: int, result: AttemptResult, state: str
) -> dict[str, Any]:
    """The attempt as the job's audit trail tells it (a `webhook.attempt` event)."""
    return {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "attempt": attempt,
        "status_code": result.status_code,
        "error": result.error,
        "state": state,
    }


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
    limiter = limiter or _process_fence(settings)
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
        result = _post(client, delivery, destination, settings)
    return _record(factory, delivery, destination, result, settings)


_HAND_BACK = text(
    "UPDATE deliveries SET lease_id = gen_random_uuid()::text"
    " WHERE id = :id AND lease_id IS NULL AND state = 'pending' RETURNING lease_id"
)


def send_in_place(
    factory: sessionmaker[Session],
    delivery_id: str,
    lease_id: str,
    *,
    client: httpx.Client,
    settings: Settings,
    limiter: TargetLimiter | None = None,
) -> str | None:
    """`attempt_delivery` in the worker that just created the delivery, skipping the queue.

    Only for a target whose last attempt from this process was quick and that has a slot
    free now: the job's thread then spends a few milliseconds on the POST instead of a
    broker round trip, a task and a second claim. Any other delivery is leased afresh
    and that lease returned, for the caller to queue as usual. None: nothing to queue
    (sent and recorded, ended unsent, or the lease was gone).
    """
    limiter = limiter or _process_fence(settings)
    # The slot is taken inside the claim's transaction and held through the POST; the
    # stack gives it back however either ends (a failed commit included).
    with contextlib.ExitStack() as held:
        with factory() as session, session.begin():
            lease = attempt_lease(settings.webhook_timeout)
            delivery = _claim(session, delivery_id, lease_id, lease)
            if delivery is None:
                return None
            target = delivery.endpoint_id or delivery.url
            if not held.enter_context(limiter.slot(target, quick_only=True)):
                # Unknown, slow or busy here: the queue (and its per-target fence) takes it.
                fresh: str | None = session.scalar(_HAND_BACK, {"id": delivery.id})
                return fresh
            destination = _destination(session, delivery)
        if destination is None:
            return None
        result = _post(client, delivery, destination, settings)
    _record(factory, delivery, destination, result, settings)
    return None


def _post(
    client: httpx.Client, delivery: Claimed, destination: Destination, settings: Settings
) -> AttemptResult:
    return post_signed(
        client,
        destination.url,
        event_id=delivery.event_id,
        payload=delivery.payload,
        secrets=destination.secrets,
        allowed=settings.allow_private_urls,
        timeout=settings.webhook_timeout,
    )


def _end_unsent(session: Session, delivery_id: str, reason: str) -> None:
    session.execute(_END_UNSENT, {"id": delivery_id, "error": f"not sent: {reason}"})


def _destination(session: Session, delivery: Claimed) -> Destination | None:
    """Where the claimed delivery goes now; ends it (failed, unsent) if nowhere."""
    destination = delivery_destination(session, delivery, dt.datetime.now(dt.UTC))
    if destination is None:
        _end_unsent(session, delivery.id, "the endpoint is disabled or was deleted")
        return None
    if destination.url != delivery.url:
        # The endpoint's URL changed since the event; the log follows it. (event, url) is
        # unique: if the event already goes to the new URL another way, this copy ends.
        taken = session.scalar(_URL_TAKEN, {"event_id": delivery.event_id, "url": destination.url})
        if taken is not None:
            _end_unsent(session, delivery.id, f"the event already goes to this URL ({taken})")
            return None
        session.execute(_FOLLOW_URL, {"id": delivery.id, "url": destination.url})
    return destination
