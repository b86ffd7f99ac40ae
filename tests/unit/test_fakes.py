"""The in-process twins behind the pipeline's seams: limits, storage and the fake vendor."""

from __future__ import annotations

import pytest

from editqueue.config import Settings
from editqueue.infra.storage import MemoryStorage, StorageError, open_storage
from editqueue.providers import fake
from editqueue.providers.base import CallbackRejected
from editqueue.providers.limits import Limit, LocalLimits, ProviderLimits, open_limits
from tests.unit.provider_fakes import edit_request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_request_rate_is_a_sliding_window(clock: Clock) -> None:
    limits = LocalLimits({"ark": Limit(requests_per_second=2)}, clock=clock)
    assert limits.acquire_request("ark", "a") == 0 and limits.acquire_request("ark", "b") == 0
    assert limits.acquire_request("ark", "c") == pytest.approx(1.05)
    clock.now += 0.5
    assert limits.acquire_request("ark", "c") == pytest.approx(0.55)
    clock.now += 0.6
    assert limits.acquire_request("ark", "c") == 0
    assert limits.acquire_request("vtrix", "unlimited") == 0


def test_slots_are_held_per_job_until_released_or_expired(clock: Clock) -> None:
    limits = LocalLimits({"ark": Limit(max_concurrent=1)}, clock=clock)
    assert limits.acquire_slot("ark", "job_1", 60)
    assert limits.acquire_slot("ark", "job_1", 60)  # idempotent for its holder
    assert not limits.acquire_slot("ark", "job_2", 60)
    assert limits.slot_holders("ark") == ["job_1"]
    limits.release_slot("ark", "job_1")
    assert limits.acquire_slot("ark", "job_2", 10)
    clock.now += 11
    assert limits.slot_holders("ark") == []
    assert limits.acquire_slot("ark", "job_3", 10)
    assert limits.acquire_slot("vtrix", "any", 10) and limits.slot_holders("vtrix") == []


def test_failures_in_a_window_cool_a_vendor_down_and_success_forgives(clock: Clock) -> None:
    limits = LocalLimits(
        {}, failure_threshold=2, failure_window=30, cooldown_seconds=20, clock=clock
    )
    limits.record_failure("ark")
    limits.record_success("ark")
    limits.record_failure("ark")
    assert limits.cooldown_left("ark") == 0
    clock.now += 31  # the first failure left the window
    limits.record_failure("ark")
    limits.record_failure("ark")
    assert limits.cooldown_left("ark") == 20
    limits.cool_down("ark", 5)  # never shortens a running cooldown
    limits.cool_down("ark", 0)
    assert limits.cooldown_left("ark") == 20
    clock.now += 20
    assert limits.cooldown_left("ark") == 0


def test_the_setting_picks_the_limits() -> None:
    assert isinstance(open_limits("memory", None, {}), LocalLimits)
    assert isinstance(open_limits("redis", None, {}), ProviderLimits)
    with pytest.raises(ValueError, match="memory"):
        open_limits("etcd", None, {})
    assert Settings(provider_limits="memory").provider_limits == "memory"


def test_memory_storage_keeps_objects_and_fails_on_demand() -> None:
    storage = open_storage("memory://", public_url="http://x", signing_key=b"k")
    assert isinstance(storage, MemoryStorage)
    stored = storage.put("t/j/in/0.png", b"abc", "image/png")
    assert (stored.size, storage.get("t/j/in/0.png")) == (3, b"abc")
    assert storage.exists("t/j/in/0.png")
    assert storage.signed_url("t/j/in/0.png", 60).url.startswith("memory://t/j/in/0.png?expires=")
    storage.delete("t/j/in/0.png")
    storage.delete("t/j/in/0.png")
    assert not storage.exists("t/j/in/0.png")
    with pytest.raises(StorageError, match="no object"):
        storage.get("t/j/in/0.png")
    with pytest.raises(StorageError):
        storage.put("../escape", b"", "image/png")
    storage.fail("check", times=1)
    with pytest.raises(StorageError, match="injected"):
        storage.check()
    storage.check()
    assert Settings(storage_url="memory://").storage_url == "memory://"


def test_the_fake_vendor_answers_from_its_script_then_succeeds() -> None:
    vendor = fake.FakeProvider("ark", submit=[fake.task("t-9"), fake.rate_limited(2.0)])
    request = edit_request()
    assert vendor.submit(request).task_id == "t-9"
    with pytest.raises(fake.ProviderError) as caught:
        vendor.submit(request)
    assert (caught.value.code, caught.value.provider, caught.value.retry_after) == (
        "rate_limited",
        "ark",
        2.0,
    )
    assert vendor.submit(request).state == "succeeded"
    assert vendor.poll("t-9").outputs[0].data == fake.png()
    assert vendor.polled == ["t-9"] and len(vendor.requests) == 3


def test_the_fake_vendor_callback_needs_its_signature() -> None:
    vendor = fake.FakeProvider()
    assert vendor.parse_callback({"X-Fake-Signature": "ok"}, b'{"task_id": "t"}').task_id == "t"
    with pytest.raises(CallbackRejected):
        vendor.parse_callback({}, b'{"task_id": "t"}')
    with pytest.raises(ValueError):
        vendor.parse_callback({"X-Fake-Signature": "ok"}, b"[]")
    vendor.close()
    assert vendor.closed
