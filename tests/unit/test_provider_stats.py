"""Vendor-call metrics are summed in the process and reach Redis within the flush period."""

from __future__ import annotations

import time

import redis

from editqueue.ids import new_id
from editqueue.metrics import ProviderStats


def test_calls_are_summed_and_written_in_one_flush(redis_url: str) -> None:
    provider = new_id("vendor")  # a name of this test's own in the shared hashes
    stats = ProviderStats(redis_url, flush_seconds=0.2)
    client = redis.Redis.from_url(redis_url)
    try:
        for seconds in (0.01, 0.2, 3.0):
            stats.observe(provider, "submit", "succeeded", seconds)
        calls = client.hget("editqueue:metrics:provider_calls", f"{provider}|submit|succeeded")
        assert calls is None  # not yet: summed in the process first
        deadline = time.monotonic() + 5
        while calls is None and time.monotonic() < deadline:
            time.sleep(0.05)
            calls = client.hget("editqueue:metrics:provider_calls", f"{provider}|submit|succeeded")
        assert calls == b"3"
        latency = "editqueue:metrics:provider_latency"
        assert client.hget(latency, f"{provider}|submit|0.05") == b"1"
        assert client.hget(latency, f"{provider}|submit|5.0") == b"3"
        assert client.hget(latency, f"{provider}|submit|+Inf") == b"3"
        assert abs(float(client.hget(latency, f"{provider}|submit|sum") or 0) - 3.21) < 1e-6
    finally:
        client.close()
