"""Delayed calls: run once each, in due order, not before they are due."""

from __future__ import annotations

import threading
import time

from editqueue.infra.delayed import Delayed


def test_calls_run_in_due_order_and_not_early() -> None:
    delayed = Delayed()
    ran: list[tuple[str, float]] = []
    done = threading.Event()
    started = time.monotonic()

    def record(name: str) -> None:
        ran.append((name, time.monotonic() - started))
        if len(ran) == 3:
            done.set()

    delayed.call_later(0.3, lambda: record("late"))
    delayed.call_later(0.1, lambda: record("early"))
    delayed.call_later(0.2, lambda: record("middle"))
    assert done.wait(3)
    assert [name for name, _ in ran] == ["early", "middle", "late"]
    for (_, at), due in zip(ran, (0.1, 0.2, 0.3), strict=True):
        assert due - 0.005 <= at < due + 0.25
    assert delayed.pending() == 0


def test_a_due_call_runs_at_once_and_a_failing_one_does_not_stop_the_rest() -> None:
    delayed = Delayed()
    ran: list[str] = []
    delayed.call_later(0, lambda: ran.append("now"))
    assert ran == ["now"]
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("broker down")

    delayed.call_later(0.05, boom)
    delayed.call_later(0.1, done.set)
    assert done.wait(3)
