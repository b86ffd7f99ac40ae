"""What the vendors page shows: each vendor's state (Redis, shared with the workers) and the
tenant's last hour of jobs per vendor (PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session
from ulid import ULID

from editqueue import logs
from editqueue.config import PROVIDERS, Settings
from editqueue.providers.limits import Limit, ProviderLimits
from editqueue.tasknames import ALL_QUEUES

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=1)
# Jobs that end within the hour were created within a day (deadlines are shorter), so the
# queries start at the first job id of a day ago and stay on the (tenant_id, id) index.
LOOKBACK = dt.timedelta(days=1)


@dataclass
class VendorHealth:
    """One vendor as the page shows it."""

    name: str
    configured: bool
    cooldown_left: float = 0.0
    slots_used: int = 0
    slots_max: int | None = None
    rps: int | None = None
    rate_limited_recently: int = 0
    succeeded: int = 0
    failed: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def success_rate(self) -> float | None:
        return None if not self.finished else 100.0 * self.succeeded / self.finished

    @property
    def per_minute(self) -> float:
        return self.finished / (WINDOW.total_seconds() / 60)

    @property
    def state(self) -> str:
        if not self.configured:
            return "not configured"
        if self.cooldown_left > 0:
            return "cooling down"
        if self.slots_max and self.slots_used >= self.slots_max:
            return "at capacity"
        return "healthy"


@dataclass
class Overview:
    """Everything on the vendors page."""

    vendors: list[VendorHealth]
    queued: int
    submitting: int
    waiting_at_vendors: int
    broker_queues: dict[str, int | None]
    minutes: list[dict[str, Any]] = field(default_factory=list)


def _first_id_since(moment: dt.datetime) -> str:
    return f"job_{ULID.from_datetime(moment)}"[:14]  # the time part only: a lower bound


_PER_VENDOR = text(
    """
    SELECT provider,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)
               FILTER (WHERE status = 'succeeded') AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)
               FILTER (WHERE status = 'succeeded') AS p95
      FROM (SELECT provider, status, extract(epoch FROM completed_at - started_at) AS seconds
              FROM jobs
     WHERE tenant_id = :tenant AND id > :first_id AND completed_at > :since
       AND provider IS NOT NULL AND status IN ('succeeded', 'failed')) AS ended
     GROUP BY provider
    """
)
_RATE_LIMITED = text(
    """
    SELECT a->>'provider' AS provider, count(*) AS n
      FROM jobs, jsonb_array_elements(coalesce(usage->'attempts', '[]'::jsonb)) AS a
     WHERE tenant_id = :tenant AND id > :first_id AND a->>'outcome' = 'rate_limited'
       AND a->>'at' > :since_text
     GROUP BY 1
    """
)
_PER_MINUTE = text(
    """
    SELECT date_trunc('minute', completed_at) AS minute,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status <> 'succeeded') AS other
      FROM jobs
     WHERE tenant_id = :tenant AND id > :first_id AND completed_at > :since
       AND status IN ('succeeded', 'failed', 'canceled')
     GROUP BY 1
    """
)
_BACKLOG = text(
    """
    SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'running' AND stage = 'submit') AS submitting,
           count(*) FILTER (WHERE status = 'running' AND stage = 'wait') AS waiting
      FROM jobs WHERE tenant_id = :tenant AND status IN ('queued', 'running')
    """
)


def _limits(settings: Settings) -> ProviderLimits:
    return ProviderLimits(
        settings.redis_url,
        {p: Limit(*settings.provider_limit(p)) for p in PROVIDERS},
        failure_threshold=settings.provider_failure_threshold,
        cooldown_seconds=settings.provider_cooldown,
    )


def _broker_queues(redis_url: str | None, client_url: str | None) -> dict[str, int | None]:
    if not redis_url or not client_url:
        return dict.fromkeys(ALL_QUEUES)
    client = redis.Redis.from_url(client_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return {q: int(client.llen(q)) for q in ALL_QUEUES}
    except redis.RedisError as exc:
        log.warning("console.broker.unreachable", extra=logs.fields(error=str(exc)))
        return dict.fromkeys(ALL_QUEUES)
    finally:
        client.close()


def overview(
    session: Session, tenant_id: str, settings: Settings, *, redis_client_url: str | None
) -> Overview:
    """The vendors' state now and the tenant's last hour."""
    now = dt.datetime.now(dt.UTC)
    since = now - WINDOW
    params = {"tenant": tenant_id, "first_id": _first_id_since(now - LOOKBACK), "since": since}
    limits = _limits(settings)
    vendors = {}
    for name in PROVIDERS:
        rps, concurrent = settings.provider_limit(name)
        vendors[name] = VendorHealth(
            name=name,
            configured=bool(settings.provider_api_key(name)),
            cooldown_left=limits.cooldown_left(name),
            slots_used=len(limits.slot_holders(name)),
            slots_max=concurrent,
            rps=rps,
        )
    for row in session.execute(_PER_VENDOR, params):
        vendor = vendors.get(row.provider)
        if vendor is None:
            continue
        vendor.succeeded, vendor.failed = int(row.succeeded), int(row.failed)
        vendor.p50_ms = None if row.p50 is None else float(row.p50) * 1000
        vendor.p95_ms = None if row.p95 is None else float(row.p95) * 1000
    recent = {
        "tenant": tenant_id,
        "first_id": _first_id_since(now - WINDOW),
        "since_text": (now - dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
    }
    for row in session.execute(_RATE_LIMITED, recent):
        if row.provider in vendors:
            vendors[row.provider].rate_limited_recently = int(row.n)
    backlog = session.execute(_BACKLOG, {"tenant": tenant_id}).one()
    by_minute = {r.minute: r for r in session.execute(_PER_MINUTE, params)}
    start = since.replace(second=0, microsecond=0)
    minutes = []
    for i in range(1, 61):
        minute = start + dt.timedelta(minutes=i)
        counts = by_minute.get(minute)
        minutes.append(
            {
                "at": minute,
                "succeeded": int(counts.succeeded) if counts else 0,
                "other": int(counts.other) if counts else 0,
            }
        )
    return Overview(
        vendors=list(vendors.values()),
        queued=int(backlog.queued),
        submitting=int(backlog.submitting),
        waiting_at_vendors=int(backlog.waiting),
        broker_queues=_broker_queues(settings.redis_url, redis_client_url),
        minutes=minutes,
    )
