"""The broker transport: kombu's Redis transport with one client per connection pool."""

from __future__ import annotations

import kombu
import pytest

from worker import kombu_redis


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "worker.kombu_redis:Transport"),
        ("rediss://cache.example:6380/1", "worker.kombu_redis:Transport"),
        ("sentinel://127.0.0.1:26379", None),
        (None, None),
    ],
)
def test_only_plain_redis_urls_get_it(url: str | None, expected: str | None) -> None:
    assert kombu_redis.transport_for(url) == expected


def test_messages_go_through_and_one_client_serves_the_pool(redis_url: str) -> None:
    with kombu.Connection(redis_url, transport=kombu_redis.transport_for(redis_url)) as conn:
        channel = conn.default_channel
        assert isinstance(channel, kombu_redis.Channel)
        queue = kombu.Queue("eq_test_kombu_redis", channel=channel)
        queue.declare()
        queue.purge()
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        given = object()
        with channel.conn_or_acquire(given) as client:
            assert client is given
        kombu.Producer(channel).publish({"n": 1}, routing_key=queue.name)
        message = queue.get(no_ack=False)
        assert message is not None and message.payload == {"n": 1}
        message.ack()  # the ack's pipeline runs on the shared client
        # kombu drops its pools after a connection error: the client of the old pool goes.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool
        kombu.Producer(channel).publish({"n": 2}, routing_key=queue.name)
        again = queue.get(no_ack=True)
        assert again is not None and again.payload == {"n": 2}
        queue.delete()
