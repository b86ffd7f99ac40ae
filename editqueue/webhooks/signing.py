"""Webhook events and Standard Webhooks signing (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Sequence
from typing import Any

SECRET_PREFIX = "whsec_"
JOB_EVENT_TYPES = ("job.started", "job.succeeded", "job.failed", "job.canceled")
DEFAULT_JOB_EVENTS = ("job.succeeded", "job.failed", "job.canceled")
# Events about the tenant rather than one job; only tenant endpoints receive them.
TENANT_EVENT_TYPES = ("batch.completed", "webhook_endpoint.disabled", "tenant.budget_threshold")
ENDPOINT_EVENT_TYPES = JOB_EVENT_TYPES + TENANT_EVENT_TYPES
# Chatty types an endpoint gets only when it names them: an empty subscription means
# "every event that ends something", not "every state change".
OPT_IN_EVENT_TYPES = ("job.started",)


def endpoint_wants(subscribed: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `subscribed` (empty = all but opt-in) gets a type."""
    if subscribed:
        return event_type in subscribed
    return event_type not in OPT_IN_EVENT_TYPES


def secrets_in_force(
    current: str, previous: str | None, previous_until: dt.datetime | None, now: dt.datetime
) -> list[str]:
    """The secrets that sign a delivery now: the current one, plus the old one during overlap."""
    if previous and previous_until is not None and previous_until > now:
        return [current, previous]
    return [current]


def generate_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_bytes(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw)


def sign(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<sig>` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in secrets_:
        digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """Check a delivery's signature and timestamp (for our own receiving helpers)."""
    import time

    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    try:
        timestamp = int(lowered.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign([secret], msg_id, timestamp, body).split(",", 1)[1]
    for candidate in lowered.get("webhook-signature", "").split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def event_body(event_type: str, timestamp: str, data: dict[str, Any]) -> str:
    """The JSON body of a delivery, frozen when the event happens."""
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": data}, separators=(",", ":")
    )


def next_delay(schedule: Sequence[float], attempt: int, retry_after: float | None) -> float | None:
    """Seconds until attempt `attempt + 1`, or None when the schedule is spent.

    Jitter (±10 %) keeps a recovering endpoint from being hit by every retry at once;
    a `Retry-After` longer than the scheduled delay wins.
    """
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    delay = base * random.uniform(0.9, 1.1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 86_400.0))
    return delay


def attempt_lease(timeout: float) -> float:
    """Seconds a handed-out attempt holds its delivery before the sweep may hand it out again.

    Longer than one attempt can take (the timeout, twice over for a slow DNS lookup and
    the database round trips), so a live worker is never overtaken.
    """
    return timeout * 2 + 5
