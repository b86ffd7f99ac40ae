"""The wait (poll) and store steps of the job pipeline, driven in-process."""

from __future__ import annotations

import httpx
import pytest

from editqueue.infra.netguard import UnsafeURL
from editqueue.providers import fake
from editqueue.providers.base import OutputRef
from editqueue.providers.fake import FakeProvider
from tests.unit.provider_fakes import Harness, attempt_log, make_harness

LINK = "https://93.184.215.14/result/0.png"


@pytest.fixture
def one(sessions) -> Harness:
    """A single task vendor on the route."""
    return make_harness(sessions, {"ark": FakeProvider("ark")})


@pytest.fixture
def two(sessions) -> Harness:
    return make_harness(sessions, {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")})


def waiting(h: Harness, task_id: str = "t-1") -> str:
    """A job whose task the first vendor accepted."""
    h.vendor("ark").script(submit=[fake.task(task_id)])
    job_id = h.new_job()
    assert h.submit(job_id).stage == "wait"
    return job_id


def outcomes(job) -> list[tuple[str, str]]:
    return [(a["provider"], a["outcome"]) for a in attempt_log(job)]


# -- poll --------------------------------------------------------------------------------------


def test_a_failed_task_fails_over_to_the_next_vendor(two: Harness) -> None:
    job_id = waiting(two)
    two.vendor("ark").script(poll=[fake.failed_task(fake.unavailable())])
    job = two.advance(job_id)
    assert (job.stage, job.provider_task_id) == ("submit", None)
    assert ("poll", {"state": "failed"}) in two.events(job_id)
    assert two.advance(job_id).provider == "vtrix"


def test_a_failed_task_without_an_error_is_a_provider_error(one: Harness) -> None:
    job_id = waiting(one)
    one.vendor("ark").script(poll=[fake.failed_task(None)])
    job = one.advance(job_id)
    assert job.status == "failed"
    assert job.error["code"] == "provider_error"
    assert job.error["message"] == "the vendor reported a failed task"


def test_trouble_reading_the_task_polls_again_later(one: Harness) -> None:
    job_id = waiting(one)
    one.vendor("ark").script(poll=[fake.unavailable()])
    job = one.advance(job_id)
    assert (job.status, job.stage, job.poll_count) == ("running", "wait", 1)
    kind, detail = one.events(job_id)[-1]
    assert kind == "poll" and detail["poll_error"] == "provider_unavailable"
    assert one.advance(job_id).status == "succeeded"


def test_a_poll_answer_that_ends_the_task_for_good_fails_the_job(one: Harness) -> None:
    job_id = waiting(one)
    one.vendor("ark").script(poll=[fake.error("content_rejected", "moderated")])
    job = one.advance(job_id)
    assert job.status == "failed" and job.error["code"] == "content_rejected"


def test_a_spent_request_rate_delays_the_poll(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_rps=1)
    h.vendor("ark").script(submit=[fake.task("t-1")])
    job_id = h.new_job()
    h.submit(job_id)
    h.limits.acquire_request("ark", "someone-else")
    job = h.advance(job_id)
    assert (job.stage, job.poll_count) == ("wait", 0)
    assert h.vendor("ark").polled == []


def test_a_poll_after_the_lease_was_lost_records_nothing(one: Harness) -> None:
    job_id = waiting(one)

    def take_over_then_answer():
        one.set_row(job_id, lease_id="someone-else")
        return fake.running()

    one.vendor("ark").script(poll=[take_over_then_answer])
    job = one.advance(job_id)
    assert (job.poll_count, job.lease_id) == (0, "someone-else")
    assert one.event_types(job_id).count("poll") == 0


# -- store -------------------------------------------------------------------------------------


def test_a_result_link_is_downloaded_into_our_storage(one: Harness) -> None:
    one.downloads[LINK] = lambda r: httpx.Response(200, content=fake.png(16, 16))
    usage = {"cost": 1}
    one.vendor("ark").script(submit=[fake.succeeded(OutputRef(url=LINK), task_id="t", usage=usage)])
    job = one.submit(one.new_job())
    assert job.status == "succeeded"
    assert job.outputs[0]["width"] == 16
    assert one.storage.get(job.outputs[0]["key"]) == fake.png(16, 16)
    # Ark's own usage fields pass through, but not a bare `cost`: usage.cost is ours
    # (editqueue.spend), and SeedEdit's price at Ark is unknown by default.
    stored = job.usage or {}
    assert stored["images"] == 1 and stored["provider_task_id"] == "t"
    assert "cost" not in stored


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (fake.bad_output(), "not a usable image"),
        (fake.succeeded(OutputRef()), "without a URL or data"),
        (fake.empty_output(), "vendor returned no image"),
    ],
)
def test_a_result_that_is_no_image_is_a_vendor_failure(one: Harness, answer, message: str) -> None:
    one.vendor("ark").script(submit=[answer])
    job = one.submit(one.new_job())
    assert job.status == "failed"
    assert job.error["code"] == "provider_error" and message in job.error["message"]
    assert job.outputs in (None, [])


def test_a_result_link_into_our_network_is_refused(one: Harness) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise UnsafeURL("127.0.0.1 is a private address")

    one.downloads[LINK] = refuse
    one.vendor("ark").script(submit=[fake.succeeded(OutputRef(url=LINK))])
    job = one.submit(one.new_job())
    assert job.status == "failed"
    assert job.error["message"].startswith("result link refused")


@pytest.mark.parametrize("trouble", ["download", "storage"])
def test_trouble_storing_results_retries_the_step(one: Harness, trouble: str) -> None:
    job_id = waiting(one)
    if trouble == "download":
        one.downloads[LINK] = lambda r: httpx.Response(502)
        one.vendor("ark").script(poll=[fake.succeeded(OutputRef(url=LINK), task_id="t-1")])
    else:
        one.storage.fail("put", times=1)
    job = one.advance(job_id)
    assert (job.status, job.stage, job.poll_count) == ("running", "wait", 1)
    kind, detail = one.events(job_id)[-1]
    assert kind == "step.retry" and detail["reason"].startswith("results:")
    one.downloads[LINK] = lambda r: httpx.Response(200, content=fake.png())
    assert one.advance(job_id).status == "succeeded"


def test_results_of_a_job_that_ended_meanwhile_are_noted_and_discarded(one: Harness) -> None:
    job_id = waiting(one)

    def cancel_then_finish():
        one.set_row(job_id, status="canceled")
        return fake.succeeded(task_id="t-1")

    one.vendor("ark").script(poll=[cancel_then_finish])
    job = one.advance(job_id)
    assert job.status == "canceled" and not job.outputs
    assert ("ark", "succeeded") in outcomes(job)
    assert one.event_types(job_id)[-1] != "job.succeeded"


def test_a_job_failing_at_poll_gives_its_vendor_slot_back(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_max_concurrent=2)
    job_id = waiting(h)
    assert h.limits.slot_holders("ark") == [job_id]
    h.vendor("ark").script(poll=[fake.error("provider_error", "task lost")])
    assert h.advance(job_id).status == "failed"
    assert h.limits.slot_holders("ark") == []
