"""A per-target cap on concurrent webhook attempts inside one worker process.

Why: the webhooks queue runs in the worker's thread pool. A receiver that hangs holds a
thread for the whole timeout (15 s), so a backlog to one dead endpoint would otherwise
occupy every thread and stall deliveries to everyone else (and job work on the same
pool). With this fence a target holds at most `limit` threads; an attempt that finds its
target full gives its thread back and is put back in PostgreSQL for a little later,
without counting as an attempt.

A target whose last attempt was quick, and that has no slow attempt in flight, gets the
larger `quick_limit`, so a fast receiver is not throttled to `limit` requests at a time.
An unknown target starts at `limit`: a burst to a receiver that turns out dead finds the
small cap. A quick receiver that starts hanging can hold `quick_limit` threads once, for
one timeout, before the small cap applies again.

The cap is per process, on purpose: it costs no round trip, and with P worker processes
a dead target holds at most P × limit threads of P × concurrency.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

# An attempt that lasts less than this is "quick". A full target whose attempts in flight
# are all quick is worth waiting for (a slot frees in milliseconds); one with a slower
# attempt is not, and the caller defers at once. So waiting for a hanging target costs a
# thread at most this long.
QUICK_SECONDS = 0.5
# Back-off for an attempt that found its target full: short while the attempts in flight
# are quick (a busy but healthy receiver), up to one timeout when they hang.
MIN_BUSY_DELAY = 1.0
# Targets whose speed we remember (per-job URLs are many; old entries are forgotten).
REMEMBERED_TARGETS = 10_000


class TargetLimiter:
    """Counts attempts in flight per target (endpoint id, or URL of a per-job webhook)."""

    def __init__(self, limit: int, quick_limit: int | None = None) -> None:
        self.limit = limit
        self.quick_limit = max(limit, quick_limit or limit)
        self._changed = threading.Condition()
        self._started: dict[str, list[float]] = {}
        self._was_quick: OrderedDict[str, bool] = OrderedDict()

    def _cap(self, target: str, running: list[float], now: float) -> int:
        """The cap that applies to `target` now."""
        slow_in_flight = bool(running) and now - running[0] >= QUICK_SECONDS
        if self._was_quick.get(target) and not slow_in_flight:
            return self.quick_limit
        return self.limit

    def try_acquire(self, target: str) -> float | None:
        """Take a slot for `target`, waiting only while its attempts in flight are quick.

        Returns the slot's token (its start time) for `release`, or None when full.
        """
        with self._changed:
            while True:
                running = self._started.setdefault(target, [])
                now = time.monotonic()
                if len(running) < self._cap(target, running, now):
                    running.append(now)
                    return now
                wait = QUICK_SECONDS - (now - running[0])
                if wait <= 0:
                    return None
                self._changed.wait(wait)

    def try_acquire_quick(self, target: str) -> float | None:
        """A slot for `target` only if its last attempt here was quick and one is free now.

        For sending in place (the worker that ended a job sends its webhook itself): a
        target not known to be quick goes through the queue instead, and nothing waits.
        """
        with self._changed:
            running = self._started.get(target, [])
            now = time.monotonic()
            if not self._was_quick.get(target) or len(running) >= self._cap(target, running, now):
                return None
            self._started.setdefault(target, []).append(now)
            return now

    def release(self, target: str, token: float) -> None:
        """Give back the slot taken at `token`, remembering how quick the attempt was."""
        with self._changed:
            running = self._started.get(target, [])
            if token in running:
                running.remove(token)
            if not running:
                self._started.pop(target, None)
            self._was_quick[target] = time.monotonic() - token < QUICK_SECONDS
            self._was_quick.move_to_end(target)
            if len(self._was_quick) > REMEMBERED_TARGETS:
                self._was_quick.popitem(last=False)
            self._changed.notify_all()

    @contextmanager
    def slot(self, target: str, *, quick_only: bool = False) -> Iterator[bool]:
        """`with limiter.slot(t) as got:` — the slot is given back on exit.

        `quick_only`: take it as `try_acquire_quick` does (never waits), else `try_acquire`.
        """
        token = self.try_acquire_quick(target) if quick_only else self.try_acquire(target)
        try:
            yield token is not None
        finally:
            if token is not None:
                self.release(target, token)

    def in_flight(self, target: str) -> int:
        """Attempts to `target` running now."""
        with self._changed:
            return len(self._started.get(target, ()))

    def busy_delay(self, target: str, timeout: float) -> float:
        """How long to put off an attempt that found `target` full (before jitter)."""
        with self._changed:
            running = self._started.get(target)
            oldest = time.monotonic() - running[0] if running else 0.0
        # Quick attempts free a slot soon; hanging ones only when they time out.
        return MIN_BUSY_DELAY if oldest < QUICK_SECONDS else max(MIN_BUSY_DELAY, timeout)


def max_in_flight(concurrency: int, configured: int | None = None) -> int:
    """Attempts to one target a worker process runs at once (the slow-endpoint fence).

    `configured` is `Settings.webhook_max_in_flight` (`EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT`);
    by default a quarter of the process's threads: a dead endpoint can hold no more.
    """
    if configured is not None:
        return configured
    return max(1, concurrency // 4)
