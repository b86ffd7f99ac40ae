"""Request counters per vendor, for tests that check retries and rate limits."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any


class _VendorCounters:
    def __init__(self) -> None:
        self.by_op: collections.Counter[str] = collections.Counter()
        self.by_second: collections.Counter[int] = collections.Counter()
        self.tasks_created = 0
        self.callbacks: collections.Counter[str] = collections.Counter()


class Stats:
    """Thread-safe counters: requests by op and by wall-clock second, tasks, callbacks."""

    def __init__(self, vendors: list[str]) -> None:
        self._vendors = list(vendors)
        self._lock = threading.Lock()
        self._counters = {v: _VendorCounters() for v in self._vendors}

    def request(self, vendor: str, op: str) -> None:
        """Count one API request of `vendor` (every answer counts, errors included)."""
        with self._lock:
            counters = self._counters[vendor]
            counters.by_op[op] += 1
            counters.by_second[int(time.time())] += 1

    def task_created(self, vendor: str) -> None:
        """Count one task accepted by a task vendor."""
        with self._lock:
            self._counters[vendor].tasks_created += 1

    def callback(self, vendor: str, outcome: str) -> None:
        """Count one callback attempt by outcome (`sent`, `failed`, `lost`)."""
        with self._lock:
            self._counters[vendor].callbacks[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        """Every vendor's counters as JSON (seconds are Unix-time strings)."""
        with self._lock:
            return {
                vendor: {
                    "requests": dict(c.by_op),
                    "total": sum(c.by_op.values()),
                    "per_second": {str(s): n for s, n in sorted(c.by_second.items())},
                    "tasks_created": c.tasks_created,
                    "callbacks": dict(c.callbacks),
                }
                for vendor, c in self._counters.items()
            }

    def reset(self) -> None:
        """Forget every counter."""
        with self._lock:
            self._counters = {v: _VendorCounters() for v in self._vendors}
