"""Prometheus metrics: vendor-call counters kept in Redis by every worker, and gauges
read from PostgreSQL and Redis when `/metrics` is scraped.

Workers are many short-lived processes, so they do not serve metrics themselves; they
add to shared counters, and the API renders everything in one place.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.infra import outbox
from editqueue.tasknames import ALL_QUEUES

log = logging.getLogger(__name__)

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_CALLS = "editqueue:metrics:provider_calls"
_LATENCY = "editqueue:metrics:provider_latency"


# Vendor-call counts are summed in the process and written at most this often: one Redis
# pipeline a second instead of one per call (the worker's ~2 % of CPU per job).
FLUSH_SECONDS = 1.0


class ProviderStats:
    """Counts and times vendor calls in Redis, shared by every worker process.

    Calls are summed here and flushed within `flush_seconds`; a process that dies loses
    at most that much of its counts, which metrics can afford.
    """

    def __init__(self, url: str | None, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._redis = (
            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) if url else None
        )
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._sums: defaultdict[str, float] = defaultdict(float)
        self._timer: threading.Timer | None = None

    def observe(self, provider: str, op: str, outcome: str, seconds: float) -> None:
        """Record one call; never fails the caller."""
        if self._redis is None:
            return
        with self._lock:
            self._counts[(_CALLS, f"{provider}|{op}|{outcome}")] += 1
            for bound in BUCKETS:
                if seconds <= bound:
                    self._counts[(_LATENCY, f"{provider}|{op}|{bound}")] += 1
            self._counts[(_LATENCY, f"{provider}|{op}|+Inf")] += 1
            self._sums[f"{provider}|{op}|sum"] += seconds
            if self._timer is None:
                self._timer = threading.Timer(self._flush_seconds, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write the sums gathered since the last flush (one pipeline)."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums, self._timer = Counter(), defaultdict(float), None
        if self._redis is None or not counts:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (key, field), count in counts.items():
                pipe.hincrby(key, field, count)
            for field, total in sums.items():
                pipe.hincrbyfloat(_LATENCY, field, total)
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("metrics.provider.unrecorded", extra=logs.fields(error=str(exc)))


class _Collector:
    def __init__(self, sessions: sessionmaker[Session], redis_url: str | None) -> None:
        self.sessions = sessions
        self.redis_url = redis_url

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        yield from self._redis()

    def _database(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("editqueue_jobs", "Jobs by status.", labels=["status"])
        stages = GaugeMetricFamily(
            "editqueue_running_jobs", "Running jobs by stage.", labels=["stage"]
        )
        oldest = GaugeMetricFamily(
            "editqueue_queued_oldest_age_seconds", "Age of the oldest queued job."
        )
        deliveries = GaugeMetricFamily(
            "editqueue_webhook_deliveries", "Webhook deliveries by state.", labels=["state"]
        )
        attempts = GaugeMetricFamily(
            "editqueue_webhook_attempts_last_hour",
            "Webhook attempts in the last hour by outcome.",
            labels=["outcome"],
        )
        backlog = GaugeMetricFamily("editqueue_outbox_backlog", "Outbox messages not published.")
        lag = GaugeMetricFamily(
            "editqueue_outbox_lag_seconds", "Age of the oldest unpublished outbox message."
        )
        with self.sessions() as session:
            for status, count in session.execute(
                text("SELECT status, count(*) FROM jobs GROUP BY status")
            ):
                jobs.add_metric([status], count)
            for stage, count in session.execute(
                text("SELECT stage, count(*) FROM jobs WHERE status = 'running' GROUP BY stage")
            ):
                stages.add_metric([stage or "unknown"], count)
            age = session.execute(
                text(
                    "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                    "FROM jobs WHERE status = 'queued'"
                )
            ).scalar_one()
            oldest.add_metric([], float(age))
            for state, count in session.execute(
                text("SELECT state, count(*) FROM deliveries GROUP BY state")
            ):
                deliveries.add_metric([state], count)
            for outcome, count in session.execute(
                text(
                    "SELECT CASE WHEN status_code BETWEEN 200 AND 299 THEN 'success'"
                    " WHEN status_code IS NULL THEN 'network_error' ELSE 'http_error' END,"
                    " count(*) FROM delivery_attempts WHERE at > now() - interval '1 hour'"
                    " GROUP BY 1"
                )
            ):
                attempts.add_metric([outcome], count)
            count, seconds = outbox.backlog(session)
            backlog.add_metric([], count)
            lag.add_metric([], seconds)
        return [jobs, stages, oldest, deliveries, attempts, backlog, lag]

    def _redis(self) -> Iterable[Metric]:
        if not self.redis_url:
            return []
        depth = GaugeMetricFamily(
            "editqueue_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        calls = CounterMetricFamily(
            "editqueue_provider_calls",
            "Vendor calls by provider, operation and outcome.",
            labels=["provider", "op", "outcome"],
        )
        latency = HistogramMetricFamily(
            "editqueue_provider_latency_seconds",
            "Vendor call latency.",
            labels=["provider", "op"],
        )
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            for queue in ALL_QUEUES:
                depth.add_metric([queue], client.llen(queue))
            for key, value in client.hgetall(_CALLS).items():
                provider, op, outcome = _text(key).split("|")
                calls.add_metric([provider, op, outcome], int(value))
            for (provider, op), (buckets, total) in _histograms(client.hgetall(_LATENCY)).items():
                latency.add_metric([provider, op], buckets=buckets, sum_value=total)
        except redis.RedisError as exc:
            log.warning("metrics.broker.unreachable", extra=logs.fields(error=str(exc)))
            return []
        finally:
            client.close()
        return [depth, calls, latency]


def _text(value: bytes | str) -> str:
    """A Redis reply as text (this client does not decode replies, but its typing allows it)."""
    return value.decode() if isinstance(value, bytes) else value


def _histograms(
    raw: dict[bytes | str, bytes | str],
) -> dict[tuple[str, str], tuple[list[tuple[str, float]], float]]:
    series: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in raw.items():
        provider, op, bound = _text(key).split("|")
        series.setdefault((provider, op), {})[bound] = float(value)
    out = {}
    for labels, values in series.items():
        buckets = [(str(b), values.get(str(b), 0.0)) for b in BUCKETS]
        buckets.append(("+Inf", values.get("+Inf", 0.0)))
        out[labels] = (buckets, values.get("sum", 0.0))
    return out


def render(sessions: sessionmaker[Session], redis_url: str | None) -> bytes:
    """The Prometheus text exposition of every metric."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(sessions, redis_url))
    return generate_latest(registry)
