"""A debounced doorbell for the dispatcher.

Ringing is only a hint: jobs wait in PostgreSQL and beat runs the dispatcher every second
anyway, so a lost ring costs at most that second. What matters is that a burst of submits
does not turn into a burst of dispatcher runs (each one a query over the queued jobs), and
that the last ring of a burst is never dropped, so the burst's last job is not left for beat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from editqueue import logs
from editqueue.infra.delayed import Delayed

log = logging.getLogger(__name__)


# The API rings on every submit and a worker on every job start and end. At 50 ms that was
# 0.8 dispatcher runs per job from the workers, and 20 publishes a second per API process
# during a burst of submits (3.5 % of its CPU). The dispatch window holds more than this
# interval's work, and a lone ring still goes out at once.
RING_INTERVAL = 0.2


class Doorbell:
    """Calls `ring` at most once per `interval`; a ring inside the interval is sent at its end."""

    def __init__(
        self,
        ring: Callable[[], None],
        interval: float = RING_INTERVAL,
        *,
        delayed: Delayed | None = None,
    ) -> None:
        self._ring = ring
        self._interval = interval
        # Trailing rings go through one long-lived thread, not a thread each.
        self._delayed = delayed or Delayed("doorbell")
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._pending = False

    def __call__(self) -> None:
        with self._lock:
            if self._pending:
                return  # a ring is already scheduled for the end of this interval
            now = time.monotonic()
            wait = self._last + self._interval - now
            if wait > 0:
                self._pending = True
                self._delayed.call_later(wait, self._fire)
                return
            self._last = now
        self._send()

    def _fire(self) -> None:
        with self._lock:
            self._pending = False
            self._last = time.monotonic()
        self._send()

    def _send(self) -> None:
        try:
            self._ring()
        except Exception as exc:  # only a hint: beat's tick dispatches within a second
            log.debug("dispatch.doorbell.failed", extra=logs.fields(error=str(exc)))
