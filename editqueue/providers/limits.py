"""Per-vendor limits and health shared by every worker process through Redis.

- requests per second: a sliding one-second log per vendor, so no wall-clock second
  ever sees more than the limit, whichever process sends;
- concurrent tasks: a set of job leases per vendor, held from submit until the job ends;
- cooldown: a vendor that keeps failing, or answered 429 with Retry-After, is skipped by
  routing until the cooldown ends;
- latency: the last `LATENCY_SAMPLES` successful task durations per vendor (kept for
  `LATENCY_WINDOW` seconds), which the `fastest` routing strategy ranks by.

Every check runs as one Lua script, so concurrent workers cannot both take the last slot.
When Redis cannot be reached the limits fail open: the broker is the same Redis, so no
work is flowing then anyway, and a vendor answering 429 still slows us down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from editqueue import logs

log = logging.getLogger(__name__)

# The `fastest` strategy's sliding window: at most this many successes, none older than this.
LATENCY_SAMPLES = 50
LATENCY_WINDOW = 600.0

# The window is a little over a second so that a request admitted at the end of one
# second and arriving at the vendor a few milliseconds later still counts correctly.
WINDOW_MS = 1050

_RATE = """
local key, limit, window, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return oldest[2] + window - now
"""

_SLOT = """
local key, limit, ttl, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, member) or redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now + ttl, member)
  return 1
end
return 0
"""

_FAILURE = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
if count >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
return count
"""


# Samples are "<redis ms>:<seconds>", newest first; the list is trimmed to the sample count
# and expires with the window, so a vendor nobody uses any more leaves nothing behind.
# KEYS[2], when given, is the vendor's failure window: a success forgets it in the same trip.
_LATENCY = """
if KEYS[2] then redis.call('DEL', KEYS[2]) end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('LPUSH', KEYS[1], now .. ':' .. ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Redis's clock first, then each key's samples: one round trip for every candidate.
_READ_LATENCY = """
local t = redis.call('TIME')
local out = {t[1] * 1000 + math.floor(t[2] / 1000)}
for i, key in ipairs(KEYS) do
  out[i + 1] = redis.call('LRANGE', key, 0, -1)
end
return out
"""

# Live slot holders per key (members whose expiry is still ahead).
_SLOTS_IN_USE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZCOUNT', key, '(' .. now, '+inf')
end
return out
"""


def _fresh_samples(raw: list, now_ms: float) -> list[float]:
    """Durations from stored "<ms>:<seconds>" samples still inside the window."""
    out: list[float] = []
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else str(item)
        at, _, seconds = text.partition(":")
        try:
            if now_ms - float(at) <= LATENCY_WINDOW * 1000:
                out.append(float(seconds))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Limit:
    """A vendor's configured limits (None = unlimited)."""

    requests_per_second: int | None = None
    max_concurrent: int | None = None


class ProviderLimits:
    """Rate limits, concurrency slots and cooldowns of the vendors, in Redis."""

    def __init__(
        self,
        url: str | None,
        limits: dict[str, Limit],
        *,
        failure_threshold: int = 3,
        failure_window: int = 30,
        cooldown_seconds: float = 30.0,
        prefix: str = "editqueue:provider",
    ) -> None:
        self._redis = (
            redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) if url else None
        )
        self._limits = limits
        self._prefix = prefix
        self.failure_threshold = failure_threshold
        self.failure_window = failure_window
        self.cooldown_seconds = cooldown_seconds
        if self._redis is not None:
            self._rate = self._redis.register_script(_RATE)
            self._slot = self._redis.register_script(_SLOT)
            self._failure = self._redis.register_script(_FAILURE)
            self._latency = self._redis.register_script(_LATENCY)
            self._read_latency = self._redis.register_script(_READ_LATENCY)
            self._slots_in_use = self._redis.register_script(_SLOTS_IN_USE)

    def _key(self, provider: str, kind: str) -> str:
        return f"{self._prefix}:{provider}:{kind}"

    def acquire_request(self, provider: str, request_id: str) -> float:
        """Take one request of the vendor's rate; 0 when granted, else seconds to wait."""
        limit = self._limits.get(provider, Limit()).requests_per_second
        if not limit or self._redis is None:
            return 0.0
        try:
            wait_ms = self._rate(
                keys=[self._key(provider, "rate")], args=[limit, WINDOW_MS, request_id]
            )
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.rate_unavailable",
                extra=logs.fields(provider=provider, error=str(exc)),
            )
            return 0.0
        return max(0.0, float(wait_ms) / 1000.0)

    def acquire_slot(self, provider: str, job_id: str, ttl_seconds: float) -> bool:
        """Hold one of the vendor's concurrent-task slots for this job (idempotent)."""
        limit = self._limits.get(provider, Limit()).max_concurrent
        if not limit or self._redis is None:
            return True
        try:
            granted = self._slot(
                keys=[self._key(provider, "slots")],
                args=[limit, int(ttl_seconds * 1000), job_id],
            )
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.slots_unavailable",
                extra=logs.fields(provider=provider, error=str(exc)),
            )
            return True
        return bool(granted)

    def slot_holders(self, provider: str) -> list[str]:
        """The job ids holding the vendor's slots now (empty when unlimited or unreachable)."""
        if self._redis is None or not self._limits.get(provider, Limit()).max_concurrent:
            return []
        try:
            members = self._redis.zrange(self._key(provider, "slots"), 0, -1)
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.slots_unreadable",
                extra=logs.fields(provider=provider, error=str(exc)),
            )
            return []
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def release_slot(self, provider: str, job_id: str) -> None:
        """Give the job's slot back (the job ended or moved to another vendor)."""
        if self._redis is None or not self._limits.get(provider, Limit()).max_concurrent:
            return
        try:
            self._redis.zrem(self._key(provider, "slots"), job_id)
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.slot_release_failed",
                extra=logs.fields(provider=provider, error=str(exc)),
            )

    def record_failure(self, provider: str) -> None:
        """A transient failure; enough of them in a short window cool the vendor down."""
        if self._redis is None:
            return
        try:
            self._failure(
                keys=[self._key(provider, "failures"), self._key(provider, "cooldown")],
                args=[
                    self.failure_window,
                    self.failure_threshold,
                    int(self.cooldown_seconds * 1000),
                ],
            )
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.failure_unrecorded",
                extra=logs.fields(provider=provider, error=str(exc)),
            )

    def record_success(self, provider: str, *, task_seconds: float | None = None) -> None:
        """The vendor answered well: forget its recent failures. With `task_seconds` (a
        finished task's duration), also `record_latency`, in the same round trip."""
        if self._redis is None:
            return
        try:
            if task_seconds is None:
                self._redis.delete(self._key(provider, "failures"))
            else:
                self._latency(
                    keys=[self._key(provider, "latency"), self._key(provider, "failures")],
                    args=self._latency_args(task_seconds),
                )
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.success_unrecorded",
                extra=logs.fields(provider=provider, error=str(exc)),
            )

    def cool_down(self, provider: str, seconds: float) -> None:
        """Skip the vendor for a while (it asked us to, with 429 + Retry-After)."""
        if self._redis is None or seconds <= 0:
            return
        try:
            key = self._key(provider, "cooldown")
            current = self._redis.pttl(key)
            wanted = int(seconds * 1000)
            if current is None or current < wanted:
                self._redis.set(key, "1", px=wanted)
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.cooldown_unset",
                extra=logs.fields(provider=provider, error=str(exc)),
            )

    def cooldown_left(self, provider: str) -> float:
        """Seconds until the vendor may be used again (0 when it is not cooling down)."""
        if self._redis is None:
            return 0.0
        try:
            left = self._redis.pttl(self._key(provider, "cooldown"))
        except redis.RedisError:
            return 0.0
        return max(0.0, (left or 0) / 1000.0)

    def record_latency(self, provider: str, seconds: float) -> None:
        """A task of this vendor succeeded after `seconds` (one Redis call)."""
        if self._redis is None:
            return
        try:
            self._latency(keys=[self._key(provider, "latency")], args=self._latency_args(seconds))
        except redis.RedisError as exc:
            log.warning(
                "provider.limits.latency_unrecorded",
                extra=logs.fields(provider=provider, error=str(exc)),
            )

    @staticmethod
    def _latency_args(seconds: float) -> list[Any]:
        return [f"{max(0.0, seconds):.3f}", LATENCY_SAMPLES, int(LATENCY_WINDOW * 1000)]

    def latency_samples(self, providers: Sequence[str]) -> dict[str, list[float]]:
        """Each vendor's recent successful task durations, newest first (empty: unmeasured)."""
        if self._redis is None or not providers:
            return {p: [] for p in providers}
        try:
            now, *lists = self._read_latency(keys=[self._key(p, "latency") for p in providers])
        except redis.RedisError as exc:
            log.warning("provider.limits.latency_unreadable", extra=logs.fields(error=str(exc)))
            return {p: [] for p in providers}
        return {p: _fresh_samples(raw, float(now)) for p, raw in zip(providers, lists, strict=True)}

    def slot_usage(self, providers: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """(slots in use, max_concurrent or None when unlimited) per vendor."""
        limited = [p for p in providers if self._limits.get(p, Limit()).max_concurrent]
        used: dict[str, int] = {}
        if limited and self._redis is not None:
            try:
                counts = self._slots_in_use(keys=[self._key(p, "slots") for p in limited])
                used = {p: int(c) for p, c in zip(limited, counts, strict=True)}
            except redis.RedisError as exc:
                log.warning("provider.limits.slots_unreadable", extra=logs.fields(error=str(exc)))
        return {p: (used.get(p, 0), self._limits.get(p, Limit()).max_concurrent) for p in providers}


class Limits(Protocol):
    """What the pipeline asks of vendor limits: `ProviderLimits` (Redis) or `LocalLimits`."""

    def acquire_request(self, provider: str, request_id: str) -> float: ...
    def acquire_slot(self, provider: str, job_id: str, ttl_seconds: float) -> bool: ...
    def slot_holders(self, provider: str) -> list[str]: ...
    def release_slot(self, provider: str, job_id: str) -> None: ...
    def record_failure(self, provider: str) -> None: ...
    def record_success(self, provider: str, *, task_seconds: float | None = None) -> None: ...
    def cool_down(self, provider: str, seconds: float) -> None: ...
    def cooldown_left(self, provider: str) -> float: ...
    def record_latency(self, provider: str, seconds: float) -> None: ...
    def latency_samples(self, providers: Sequence[str]) -> dict[str, list[float]]: ...
    def slot_usage(self, providers: Sequence[str]) -> dict[str, tuple[int, int | None]]: ...


class LocalLimits:
    """The same limits kept in this process's memory (one worker process, or unit tests).

    Same rules as `ProviderLimits` (a sliding window per vendor, slots with a TTL, a
    cooldown after `failure_threshold` failures within `failure_window` seconds), but
    nothing is shared between processes. `clock` is seconds, monotonic.
    """

    def __init__(
        self,
        limits: dict[str, Limit],
        *,
        failure_threshold: int = 3,
        failure_window: int = 30,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self.failure_threshold = failure_threshold
        self.failure_window = failure_window
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, list[float]] = {}
        self._slots: dict[str, dict[str, float]] = {}  # vendor → job id → expiry
        self._failures: dict[str, list[float]] = {}
        self._cooldowns: dict[str, float] = {}  # vendor → end
        self._latencies: dict[str, list[tuple[float, float]]] = {}  # vendor → (at, seconds)

    def _limit(self, provider: str) -> Limit:
        return self._limits.get(provider, Limit())

    def acquire_request(self, provider: str, request_id: str) -> float:
        """Take one request of the vendor's rate; 0 when granted, else seconds to wait."""
        limit = self._limit(provider).requests_per_second
        if not limit:
            return 0.0
        window = WINDOW_MS / 1000.0
        with self._lock:
            now = self._clock()
            sent = [t for t in self._requests.get(provider, []) if t > now - window]
            if len(sent) < limit:
                sent.append(now)
                self._requests[provider] = sent
                return 0.0
            self._requests[provider] = sent
            return max(0.0, sent[0] + window - now)

    def acquire_slot(self, provider: str, job_id: str, ttl_seconds: float) -> bool:
        """Hold one of the vendor's concurrent-task slots for this job (idempotent)."""
        limit = self._limit(provider).max_concurrent
        if not limit:
            return True
        with self._lock:
            now = self._clock()
            slots = {j: end for j, end in self._slots.get(provider, {}).items() if end > now}
            self._slots[provider] = slots
            if job_id not in slots and len(slots) >= limit:
                return False
            slots[job_id] = now + ttl_seconds
            return True

    def slot_holders(self, provider: str) -> list[str]:
        """The job ids holding the vendor's slots now (empty when unlimited)."""
        if not self._limit(provider).max_concurrent:
            return []
        with self._lock:
            now = self._clock()
            return [j for j, end in self._slots.get(provider, {}).items() if end > now]

    def release_slot(self, provider: str, job_id: str) -> None:
        """Give the job's slot back."""
        with self._lock:
            self._slots.get(provider, {}).pop(job_id, None)

    def record_failure(self, provider: str) -> None:
        """A transient failure; enough of them in a short window cool the vendor down."""
        with self._lock:
            now = self._clock()
            recent = [t for t in self._failures.get(provider, []) if t > now - self.failure_window]
            recent.append(now)
            if len(recent) >= self.failure_threshold:
                self._cooldowns[provider] = max(
                    self._cooldowns.get(provider, 0.0), now + self.cooldown_seconds
                )
                recent = []
            self._failures[provider] = recent

    def record_success(self, provider: str, *, task_seconds: float | None = None) -> None:
        """The vendor answered well: forget its recent failures (and record `task_seconds`)."""
        with self._lock:
            self._failures.pop(provider, None)
        if task_seconds is not None:
            self.record_latency(provider, task_seconds)

    def cool_down(self, provider: str, seconds: float) -> None:
        """Skip the vendor for a while (never shortens a cooldown already running)."""
        if seconds <= 0:
            return
        with self._lock:
            end = self._clock() + seconds
            self._cooldowns[provider] = max(self._cooldowns.get(provider, 0.0), end)

    def cooldown_left(self, provider: str) -> float:
        """Seconds until the vendor may be used again (0 when it is not cooling down)."""
        with self._lock:
            return max(0.0, self._cooldowns.get(provider, 0.0) - self._clock())

    def record_latency(self, provider: str, seconds: float) -> None:
        """A task of this vendor succeeded after `seconds`."""
        with self._lock:
            samples = [(self._clock(), max(0.0, seconds)), *self._latencies.get(provider, [])]
            self._latencies[provider] = samples[:LATENCY_SAMPLES]

    def latency_samples(self, providers: Sequence[str]) -> dict[str, list[float]]:
        """Each vendor's recent successful task durations, newest first (empty: unmeasured)."""
        with self._lock:
            now = self._clock()
            return {
                p: [s for at, s in self._latencies.get(p, []) if now - at <= LATENCY_WINDOW]
                for p in providers
            }

    def slot_usage(self, providers: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """(slots in use, max_concurrent or None when unlimited) per vendor."""
        out: dict[str, tuple[int, int | None]] = {}
        for provider in providers:
            limit = self._limit(provider).max_concurrent
            out[provider] = (len(self.slot_holders(provider)) if limit else 0, limit)
        return out


def open_limits(
    kind: str,
    redis_url: str | None,
    limits: dict[str, Limit],
    *,
    failure_threshold: int = 3,
    cooldown_seconds: float = 30.0,
) -> Limits:
    """The limits `EDITQUEUE_PROVIDER_LIMITS` names: `redis` (shared) or `memory` (this process)."""
    if kind == "memory":
        return LocalLimits(
            limits, failure_threshold=failure_threshold, cooldown_seconds=cooldown_seconds
        )
    if kind == "redis":
        return ProviderLimits(
            redis_url,
            limits,
            failure_threshold=failure_threshold,
            cooldown_seconds=cooldown_seconds,
        )
    raise ValueError(f"unknown provider limits {kind!r}: expected redis or memory")
