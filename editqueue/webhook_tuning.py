"""Webhook knobs that live outside `config.Settings`, each read from the environment on use.

They are read at call time (not import time) so a process started with a different
environment — the test stack, standalone mode — sees its own values.

- `EDITQUEUE_WEBHOOK_ROTATION_OVERLAP` (seconds, default 86400): how long a rotated-out
  secret keeps signing next to the new one.
- `EDITQUEUE_WEBHOOK_DISABLE_AFTER` (seconds, default 432000 = 5 days): how long an
  endpoint may fail every attempt before it is disabled.
- `EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT` (default: a quarter of the worker's concurrency):
  attempts to one target running at once in one worker process.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ROTATION_OVERLAP_ENV = "EDITQUEUE_WEBHOOK_ROTATION_OVERLAP"
DISABLE_AFTER_ENV = "EDITQUEUE_WEBHOOK_DISABLE_AFTER"
MAX_IN_FLIGHT_ENV = "EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT"

DEFAULT_ROTATION_OVERLAP = 86_400.0  # a day, as Svix keeps an old key
DEFAULT_DISABLE_AFTER = 5 * 86_400.0  # API.md: failing every attempt for 5 days


def _number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        # A typo must not silently turn rotation or disabling off; say so and use the default.
        log.warning("%s=%r is not a number >= %s; using %s", name, raw, minimum, default)
        return default
    return value


def rotation_overlap() -> float:
    """Seconds during which both the old and the new secret sign deliveries."""
    return _number(ROTATION_OVERLAP_ENV, DEFAULT_ROTATION_OVERLAP, minimum=0)


def disable_after() -> float:
    """Seconds an endpoint may fail every attempt before it is disabled."""
    return _number(DISABLE_AFTER_ENV, DEFAULT_DISABLE_AFTER, minimum=1)


def max_in_flight(concurrency: int) -> int:
    """Attempts to one target a worker process runs at once (the slow-endpoint fence).

    By default a quarter of the process's threads: a dead endpoint can hold no more.
    """
    default = max(1, concurrency // 4)
    return int(_number(MAX_IN_FLIGHT_ENV, default, minimum=1))
