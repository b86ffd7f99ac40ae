"""A Redis counter that tells every API process when keys or their limits changed.

API processes cache key owners for a few seconds (api/auth.py). Whoever revokes a key or
changes a limit bumps `editqueue:keys:generation` after committing; every request reads
the counter (one GET) and drops its cache when the value moved, so a revoked key fails on
the very next request on every process. While Redis is unreachable, readers skip the
cache and ask the database on each request.
"""

from __future__ import annotations

import logging
import time

import redis

from editqueue import logs

log = logging.getLogger(__name__)

GENERATION_KEY = "editqueue:keys:generation"
# After Redis fails, skip it for this long rather than paying a timeout on every request.
OUTAGE_BACKOFF_SECONDS = 5.0


def _client_url(url: str) -> str:
    # Celery's `redis+socket://` spelling is `unix://` for redis-py.
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://") :]
    return url


def connect(url: str | None, timeout: float = 0.5) -> redis.Redis | None:
    """A client with short timeouts (None when no Redis is configured)."""
    if not url:
        return None
    return redis.Redis.from_url(
        _client_url(url), socket_connect_timeout=timeout, socket_timeout=timeout
    )


def bump(url: str | None) -> bool:
    """Announce a key change to every API process; False if Redis could not be told."""
    client = connect(url, timeout=2.0)
    if client is None:
        return False
    try:
        client.incr(GENERATION_KEY)
        return True
    except redis.RedisError as exc:
        log.warning("keys.generation.bump_failed", extra=logs.fields(error_type=type(exc).__name__))
        return False
    finally:
        client.close()


class GenerationReader:
    """Reads the counter; None means "unknown, do not trust any cache"."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._down_until = 0.0

    def current(self) -> bytes | None:
        """The counter's value (b"" before the first change), or None while Redis is down."""
        if self._client is None or time.monotonic() < self._down_until:
            return None
        try:
            value = self._client.get(GENERATION_KEY)
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
            log.warning(
                "keys.generation.unreadable",
                extra=logs.fields(
                    cache_off_seconds=OUTAGE_BACKOFF_SECONDS, error_type=type(exc).__name__
                ),
            )
            return None
        return value if isinstance(value, bytes) else b""
