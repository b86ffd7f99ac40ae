"""Webhook knobs. They are declared and validated in `config.Settings` like every other
setting (a bad value stops the process at start); this module holds what they derive.

- `EDITQUEUE_WEBHOOK_ROTATION_OVERLAP` (`Settings.webhook_rotation_overlap`, seconds,
  default 86400): how long a rotated-out secret keeps signing next to the new one.
- `EDITQUEUE_WEBHOOK_DISABLE_AFTER` (`Settings.webhook_disable_after`, seconds, default
  432000 = 5 days): how long an endpoint may fail every attempt before it is disabled.
- `EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT` (`Settings.webhook_max_in_flight`, default: a quarter
  of the worker's concurrency): attempts to one target running at once in one worker process.
"""

from __future__ import annotations


def max_in_flight(concurrency: int, configured: int | None = None) -> int:
    """Attempts to one target a worker process runs at once (the slow-endpoint fence).

    `configured` is `Settings.webhook_max_in_flight`; by default a quarter of the process's
    threads: a dead endpoint can hold no more.
    """
    if configured is not None:
        return configured
    return max(1, concurrency // 4)
