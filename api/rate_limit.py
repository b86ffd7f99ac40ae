"""Per-API-key request rate limits, shared by every API process through Redis.

Algorithm: GCRA (the generic cell rate algorithm, a leaky bucket kept as one timestamp per
key), run as a Lua script so the read-check-write is atomic across processes and hosts.
Redis's own clock is used, so API hosts with skewed clocks still agree.

Configuration:
- `EDITQUEUE_RATE_LIMIT` (`Settings.rate_limit`, validated at start): requests per second
  per key (default 50; 0 turns limiting off).
  Bursts of up to twice that many requests pass at once, so the policy announced is
  "2×rate requests per 2 seconds" (`RateLimit-Policy: 100;w=2` for the default).
- `ApiKey.rate_limit` overrides it per key (0 or less: that key is not limited). The value
  is cached per process with the key itself (`api.auth.OWNER_CACHE_SECONDS`).

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining` and
`RateLimit-Reset`; a 429 adds `Retry-After`. Both are whole seconds rounded up: on a 429
`RateLimit-Reset` is the same number as `Retry-After` (when the next request passes),
otherwise it is the time until the bucket is full again.
If Redis is unreachable the API fails open: requests pass unlimited and a warning is logged,
because a broker outage must never turn into API errors.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from flask import Flask, Response, current_app, g
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.auth import COUNTING_GENERATION_READER, current_key
from api.errors import ApiProblem
from api.state import services
from editqueue import logs
from editqueue.infra import key_generation
from editqueue.tenants import KeyOwner

log = logging.getLogger(__name__)

BURST_FACTOR = 2
# After Redis fails, skip it for this long rather than paying a timeout on every request.
OUTAGE_BACKOFF_SECONDS = 5.0
EXTENSION = "editqueue_rate_limit"

# KEYS[1]: the key's bucket; ARGV[1]: emission interval (µs per request); ARGV[2]: burst.
# The bucket holds the "theoretical arrival time" (TAT) of the next request in µs.
# KEYS[2], when given, is the key-generation counter (editqueue/infra/key_generation.py):
# a request whose key owner is cached confirms the cache and is counted in one round trip.
# Returns {allowed, remaining, retry_after_us, reset_after_us, generation or nil}.
GCRA_SCRIPT = """
local generation = false
if KEYS[2] then generation = redis.call('GET', KEYS[2]) end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now, generation}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now, generation}
"""


@dataclass(frozen=True)
class Decision:
    """The limiter's answer for one request."""

    allowed: bool
    limit: int
    window: int
    remaining: int
    retry_after: float
    reset_after: float

    def headers(self) -> dict[str, str]:
        """The RateLimit-* headers (and Retry-After when refused, equal to RateLimit-Reset)."""
        retry_after = str(max(1, math.ceil(self.retry_after)))
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(self.reset_after)))
            if self.allowed
            else retry_after,
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }
        if not self.allowed:
            out["Retry-After"] = retry_after
        return out


def default_rate() -> float:
    """Requests per second per key when the key sets none (`EDITQUEUE_RATE_LIMIT`)."""
    return services().settings.rate_limit


def redis_client_url(url: str) -> str:
    """A URL redis-py understands (Celery's `redis+socket://` spelling becomes `unix://`)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://") :]
    return url


class Limiter:
    """GCRA buckets in Redis; fails open (returns None) while Redis is unreachable."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT) if client is not None else None
        self._down_until = 0.0

    def check(self, bucket: str, rate: float) -> Decision | None:
        """Count one request against the bucket; None when the limit cannot be checked."""
        counted = self._run([f"editqueue:ratelimit:{bucket}"], rate)
        return None if counted is None else counted[0]

    def check_reading_generation(self, bucket: str, rate: float) -> tuple[Decision, bytes] | None:
        """`check`, also reading the key-generation counter (b"" before its first change)."""
        counted = self._run([f"editqueue:ratelimit:{bucket}", key_generation.GENERATION_KEY], rate)
        if counted is None:
            return None
        decision, generation = counted
        return decision, generation if isinstance(generation, bytes) else b""

    def _run(self, keys: list[str], rate: float) -> tuple[Decision, object] | None:
        if self._script is None or time.monotonic() < self._down_until:
            return None
        burst = max(1, round(rate * BURST_FACTOR))
        interval_us = max(1, round(1_000_000 / rate))
        try:
            allowed, remaining, retry_us, reset_us, *generation = self._script(
                keys=keys, args=[interval_us, burst]
            )
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
            log.warning(
                "api.rate_limit.suspended",
                extra=logs.fields(seconds=OUTAGE_BACKOFF_SECONDS, error=type(exc).__name__),
            )
            return None
        decision = Decision(
            allowed=bool(allowed),
            limit=burst,
            window=max(1, round(burst / rate)),
            remaining=int(remaining),
            retry_after=int(retry_us) / 1_000_000,
            reset_after=int(reset_us) / 1_000_000,
        )
        return decision, (generation[0] if generation else None)


def _rate_for(key_rate: int | None) -> float:
    return default_rate() if key_rate is None else float(key_rate)


# -- hooks -----------------------------------------------------------------------------------


def enforce() -> None:
    """before_request (after auth): count the request against its key; 429 when over."""
    key = current_key()
    if key is None:
        return  # unauthenticated routes (health, callbacks, file links) are not limited here
    key_id = key.key_id
    rate = _rate_for(key.rate_limit)
    if rate <= 0:
        return
    counted = g.pop("rate_limit_counted", None)
    if counted is not None and counted[:2] == (key_id, rate):
        decision = counted[2]  # counted by auth's key lookup (`_count_reading_generation`)
    else:
        limiter: Limiter = current_app.extensions[EXTENSION]
        decision = limiter.check(key_id, rate)
    if decision is None:
        return
    g.rate_limit = decision
    if not decision.allowed:
        raise ApiProblem(
            429,
            f"too many requests for this API key; retry in {decision.headers()['Retry-After']} s",
            code="rate_limited",
            title="Too many requests",
            headers=decision.headers(),
        )


def _count_reading_generation(limiter: Limiter, owner: KeyOwner) -> bytes | None:
    """Auth's lookup of a cached key: count the request and read the key generation in one
    round trip. None (nothing counted) when the key is not limited or Redis is away."""
    rate = _rate_for(owner.rate_limit)
    if rate <= 0:
        return None
    counted = limiter.check_reading_generation(owner.key_id, rate)
    if counted is None:
        return None
    decision, generation = counted
    # When the generation moved, auth reads the key again; `enforce` keeps this count only
    # if the key and its rate came back the same (else that one request counts twice).
    g.rate_limit_counted = (owner.key_id, rate, decision)
    return generation


def add_headers(response: Response) -> Response:
    """after_request: announce the key's limit on every response that was counted."""
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        for name, value in decision.headers().items():
            response.headers.setdefault(name, value)
    return response


def _document_429(app: Flask) -> None:
    # Every authenticated operation can be refused with a 429: say so in /openapi.json.
    for view in app.view_functions.values():
        op = getattr(view, "_openapi", None)
        # Operator routes (api/admin.py) carry no tenant key, so nothing limits them.
        if op is not None and op.auth and op.security_scheme == "bearer":
            op.responses.setdefault(429, None)


# A lost connection is sent again once, on a new one; a timeout is not (the script may have
# run, and a hung Redis should cost one timeout, not two).
RECONNECT_ONCE = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class UnprobedPool(redis.ConnectionPool):
    """A pool that hands out a connection without first probing it for unread data.

    redis-py drops a connection on any error while sending or reading, so one is only put
    back after its whole reply was read; the probe (a non-blocking read through gevent's
    socket on every checkout) was 4 % of a `POST /v1/jobs`. A connection the server closed
    meanwhile (a Redis restart) fails its command, which `RECONNECT_ONCE` sends again on a
    new one.
    """

    def ensure_connection(self, connection: Any) -> None:
        """Connect if need be; nothing else."""
        connection.connect()


def init_app(app: Flask, redis_url: str | None) -> None:
    """Install the limiter and its hooks; call after the auth hook and the blueprints."""
    client = None
    if redis_url:
        pool = UnprobedPool.from_url(
            redis_client_url(redis_url),
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=RECONNECT_ONCE,
        )
        client = redis.Redis(connection_pool=pool)
    else:
        log.warning("api.rate_limit.off")
    limiter = Limiter(client)
    app.extensions[EXTENSION] = limiter
    app.extensions[COUNTING_GENERATION_READER] = partial(_count_reading_generation, limiter)
    app.before_request(enforce)
    app.after_request(add_headers)
    _document_429(app)
