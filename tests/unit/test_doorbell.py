"""The dispatcher's doorbell: bursts collapse, the last ring of a burst is never dropped."""

from __future__ import annotations

import threading
import time

from editqueue.infra.doorbell import Doorbell


class _Rings:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.event.set()


def test_first_ring_goes_out_at_once() -> None:
    rings = _Rings()
    Doorbell(rings, interval=10)()
    assert len(rings.times) == 1


def test_a_burst_becomes_one_ring_now_and_one_at_the_interval_end() -> None:
    rings = _Rings()
    bell = Doorbell(rings, interval=0.2)
    started = time.monotonic()
    for _ in range(100):
        bell()
    assert len(rings.times) == 1
    rings.event.clear()
    assert rings.event.wait(2), "the trailing ring never came"
    assert len(rings.times) == 2
    assert rings.times[1] - started >= 0.19
    time.sleep(0.3)
    assert len(rings.times) == 2  # nothing more was asked for


def test_a_failing_ring_is_swallowed() -> None:
    def broken() -> None:
        raise ConnectionError("broker down")

    Doorbell(broken, interval=0)()  # must not raise
