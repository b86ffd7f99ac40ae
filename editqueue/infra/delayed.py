"""Run callables a short time from now, in order, on one background thread.

The worker's sweep uses it for job steps due before the sweep's next run: the step's
message is published at its due time instead of at the following sweep. Nothing here is
durable, on purpose: the timer itself stays in PostgreSQL (`jobs.next_poll_at`), so a
process that dies with calls pending only delays those steps by one lease. Broker ETA
messages would do the same job, but they sit unacknowledged in the worker meanwhile, and
kombu's Redis transport can crash the worker when the broker drops with such messages held.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Delayed:
    """A min-heap of (due time, callable) served by one daemon thread, started on first use."""

    def __init__(self, name: str = "delayed-calls") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, call: Callable[[], object]) -> None:
        """Run `call` after `delay` seconds (at once, on this thread, when not positive)."""
        if delay <= 0:
            self._run(call)
            return
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()

    def pending(self) -> int:
        """Calls not yet run."""
        with self._wake:
            return len(self._heap)

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                due, _, call = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
            self._run(call)

    @staticmethod
    def _run(call: Callable[[], object]) -> None:
        try:
            call()
        except Exception:  # one failed call must not stop the ones after it
            log.exception("delayed.call_failed")
