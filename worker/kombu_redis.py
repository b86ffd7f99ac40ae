"""kombu's Redis transport, with one redis-py client per connection pool instead of one per
operation.

kombu builds a new `redis.Redis` for every operation that is not handed one: each publish,
each ack's pipeline, the unacked bookkeeping of each message received. With redis-py 8 that
constructor copies its table of response callbacks (66 µs here), and py-spy put it at 4 % of
a worker's CPU under load. A client is only a thread-safe handle on the channel's connection
pool, so one per pool does the same work. Selected through Celery's `broker_transport`
(`transport_for`); everything else is kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis

# The schemes whose transport is kombu's plain Redis one.
_SCHEMES = frozenset({"redis", "rediss"})


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, reusing a client as long as its pool lives."""

    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The given client, or this pool's client (kombu made a new one each time)."""
        if client:
            yield client
            return
        shared = self._shared_client
        # kombu drops its pools on a connection error; a client of a dropped pool goes too.
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


def transport_for(url: str | None) -> str | None:
    """Celery's `broker_transport` for this broker URL (None: kombu's choice by scheme)."""
    if url and urlsplit(url).scheme in _SCHEMES:
        return f"{__name__}:Transport"
    return None
