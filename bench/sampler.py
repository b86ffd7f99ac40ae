"""Samples a running stack once a second: job stages, broker holds, process memory."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import redis
from sqlalchemy import create_engine, text

from bench.machine import tree_rss
from tests.stack import Stack

_STAGES = text("SELECT status, coalesce(stage, ''), count(*) FROM jobs GROUP BY status, stage")


@dataclass
class Peaks:
    """The highest value seen of each sampled figure."""

    waiting: int = 0  # running jobs in stage 'wait': at a vendor, no worker involved
    unacked: int = 0  # broker messages held by workers = task slots in use (acks_late)
    rss: Counter[str] = field(default_factory=Counter)  # bytes, by process role
    samples: int = 0
    last: dict[tuple[str, str], int] = field(default_factory=dict)


class Sampler:
    """A daemon thread filling `peaks` until `stop()`."""

    def __init__(self, stack: Stack, interval: float = 1.0) -> None:
        self.stack = stack
        self.interval = interval
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._engine = create_engine(stack.database_url, pool_size=1)
        self._redis = redis.Redis.from_url(stack.redis_url)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        with self._engine.connect() as connection:
            rows = {(s, st): n for s, st, n in connection.execute(_STAGES)}
        peaks = self.peaks
        peaks.last = rows
        peaks.waiting = max(peaks.waiting, rows.get(("running", "wait"), 0))
        peaks.unacked = max(peaks.unacked, int(self._redis.hlen("unacked")))
        for role, rss in self.rss().items():
            peaks.rss[role] = max(peaks.rss[role], rss)
        peaks.samples += 1

    def rss(self) -> Counter[str]:
        """Resident bytes now: all worker processes together, the API (master + workers)…"""
        by_role: Counter[str] = Counter()
        for name, process in list(self.stack.procs.items()):
            by_role[name.split("-")[0]] += tree_rss(process.pid)
        return by_role

    def stop(self) -> Peaks:
        """Stop sampling and return the peaks."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._engine.dispose()
        return self.peaks
