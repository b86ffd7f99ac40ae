"""The delivery log: each delivery with its latest attempt on top and every attempt below.

One entry per (event, target). The top-level fields are the ones docs/webhooks.md lists (the
outcome of the latest attempt, `attempt` = attempts made so far, `next_attempt_at` while
pending); `attempts` holds every POST, oldest first, with the receiver's answer
truncated to 1 KB.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from editqueue.errors import InvalidRequest
from editqueue.models import Delivery, DeliveryAttempt
from editqueue.serialize import timestamp

_ULID = "[0-9A-HJKMNP-TV-Z]{26}"


def attempt_to_public(attempt: DeliveryAttempt) -> dict[str, Any]:
    """One POST of a delivery."""
    return {
        "attempt": attempt.attempt,
        "status_code": attempt.status_code,
        "response_ms": attempt.response_ms,
        "response_body": attempt.response_body,
        "error": attempt.error,
        "at": timestamp(attempt.at),
    }


def delivery_to_public(delivery: Delivery, attempts: Sequence[DeliveryAttempt]) -> dict[str, Any]:
    """A delivery as the log shows it: its latest outcome and its attempts."""
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "endpoint_id": delivery.endpoint_id,
        "job_id": delivery.job_id,
        "attempt": delivery.attempt,
        "status_code": delivery.status_code,
        "response_ms": delivery.response_ms,
        "error": delivery.error,
        "at": timestamp(delivery.last_attempt_at),
        "next_attempt_at": (
            timestamp(delivery.next_attempt_at) if delivery.state == "pending" else None
        ),
        "state": delivery.state,
        "created_at": timestamp(delivery.created_at),
        "attempts": [attempt_to_public(a) for a in attempts],
    }


def with_attempts(session: Session, deliveries: Sequence[Delivery]) -> list[dict[str, Any]]:
    """Public entries for deliveries, their attempts read in one query."""
    by_delivery: dict[str, list[DeliveryAttempt]] = defaultdict(list)
    if deliveries:
        rows = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_([d.id for d in deliveries]))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.attempt, DeliveryAttempt.id)
        )
        for row in rows:
            by_delivery[row.delivery_id].append(row)
    return [delivery_to_public(d, by_delivery[d.id]) for d in deliveries]


def job_log(session: Session, job_id: str) -> list[dict[str, Any]]:
    """A job's deliveries, oldest first (a job has a handful)."""
    rows = session.scalars(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.id))
    return with_attempts(session, list(rows))


def endpoint_log(
    session: Session,
    endpoint_id: str,
    *,
    states: Sequence[str],
    limit: int,
    before_id: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of an endpoint's deliveries, newest first, and the cursor of the next page."""
    query = select(Delivery).where(Delivery.endpoint_id == endpoint_id)
    if states:
        query = query.where(Delivery.state.in_(states))
    if before_id:
        query = query.where(Delivery.id < before_id)
    rows = list(session.scalars(query.order_by(Delivery.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return with_attempts(session, page), cursor


def encode_cursor(last_id: str) -> str:
    """An opaque cursor for the page after this row (a delivery or an endpoint)."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, prefix: str = "dlv") -> str:
    """The id inside a cursor we issued for `prefix_…` rows; 422 for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        last_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        last_id = ""
    if len(cursor) > 80 or not re.fullmatch(f"{prefix}_{_ULID}", last_id):
        raise InvalidRequest(
            "invalid cursor", errors=[{"field": "cursor", "message": "not a valid cursor"}]
        )
    return last_id
