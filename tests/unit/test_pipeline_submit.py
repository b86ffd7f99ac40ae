"""The submit step of the job pipeline, driven in-process (fake vendors, memory storage)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from editqueue.jobs import pipeline
from editqueue.providers import fake
from editqueue.providers.fake import FakeProvider
from editqueue.providers.limits import LocalLimits
from tests.unit.provider_fakes import Harness, attempt_log, make_harness

IMAGE_URL = "https://93.184.215.14/in.png"  # a public literal: the guard needs no DNS


@pytest.fixture
def two(sessions) -> Harness:
    """Two vendors on the route of seededit-3.0: ark first, then vtrix."""
    return make_harness(sessions, {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")})


@pytest.fixture
def one(sessions) -> Harness:
    """A single vendor on the route: nowhere to fail over to."""
    return make_harness(sessions, {"ark": FakeProvider("ark")})


def png_answer(request: httpx.Request) -> httpx.Response:
    """A 32×32 PNG, as a stream: the fetch reads the body raw, in chunks, as from a socket."""
    data = fake.png(32, 32)
    return httpx.Response(200, stream=httpx.ByteStream(data), headers={"Content-Type": "image/png"})


def outcomes(job) -> list[tuple[str, str]]:
    return [(a["provider"], a["outcome"]) for a in attempt_log(job)]


# -- the happy paths ---------------------------------------------------------------------------


def test_sync_success_stores_the_output_and_ends_the_job(two: Harness) -> None:
    job_id = two.new_job()
    job = two.submit(job_id)
    assert job.status == "succeeded"
    assert job.provider == "ark" and job.attempts == 1
    assert len(job.outputs) == 1
    assert two.storage.exists(job.outputs[0]["key"])
    assert two.event_types(job_id)[0:3] == ["job.created", "job.started", "attempt.started"]
    assert two.event_types(job_id)[-1] == "job.succeeded"
    assert outcomes(job) == [("ark", "succeeded")]
    assert two.rings  # the finished job's slot was offered to the dispatcher
    assert two.vendor("ark").requests[0].callback_url is None


def test_a_task_vendor_leaves_the_job_waiting_then_polls_it_to_success(two: Harness) -> None:
    two.vendor("ark").script(submit=[fake.task("t-1")], poll=[fake.running("t-1", 0.5)])
    job_id = two.new_job()
    job = two.submit(job_id)
    assert (job.status, job.stage, job.provider_task_id) == ("running", "wait", "t-1")
    assert job.lease_id is None and job.next_poll_at is not None
    assert ("provider.task_created", {"provider": "ark", "task_id": "t-1"}) in two.events(job_id)
    job = two.advance(job_id)  # still running
    assert job.stage == "wait" and job.poll_count == 1
    assert two.events(job_id)[-1] == ("poll", {"state": "running", "progress": 0.5})
    job = two.advance(job_id)  # the default poll answer: done
    assert job.status == "succeeded"
    assert two.vendor("ark").polled == ["t-1", "t-1"]
    assert ("poll", {"state": "succeeded"}) in two.events(job_id)


def test_a_callback_vendor_is_given_the_job_callback_url(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark", supports_callback=True)})
    job_id = h.new_job()
    h.submit(job_id)
    token = h.job(job_id).callback_token
    url = h.vendor("ark").requests[0].callback_url
    assert url == f"{h.ctx.settings.public_url}/v1/callbacks/ark/{token}"


def _poll_wait(h: Harness, job_id: str) -> float:
    job = h.job(job_id)
    assert job.next_poll_at is not None
    return (job.next_poll_at - dt.datetime.now(dt.UTC)).total_seconds()


def test_a_vendor_that_calls_back_is_polled_less_often(sessions) -> None:
    # Polls are only the safety net for a lost callback: CALLBACK_POLL_FACTOR × the usual.
    scale = 100.0  # seconds large enough to tell the two apart on a loaded machine
    callbacks = make_harness(sessions, {"kie": FakeProvider("kie", supports_callback=True)})
    polled = make_harness(sessions, {"ark": FakeProvider("ark")})
    waits = []
    for h, name in ((callbacks, "kie"), (polled, "ark")):
        h.ctx.settings = h.ctx.settings.model_copy(update={"poll_scale": scale})
        h.vendor(name).script(submit=[fake.task("t-1")])
        job_id = h.new_job()
        assert h.submit(job_id).stage == "wait"
        waits.append(_poll_wait(h, job_id))
    usual = pipeline.poll_delay(0, scale)
    assert usual - 5 < waits[1] <= usual
    assert (
        usual * pipeline.CALLBACK_POLL_FACTOR - 5
        < waits[0]
        <= usual * pipeline.CALLBACK_POLL_FACTOR
    )


def test_a_url_input_is_fetched_once_stored_and_kept_on_the_row(two: Harness) -> None:
    two.user_images[IMAGE_URL] = png_answer
    job_id = two.new_job(url=IMAGE_URL)
    job = two.submit(job_id)
    assert job.status == "succeeded"
    stored = job.inputs[0]
    assert stored["key"] and stored["width"] == 32
    assert two.storage.exists(stored["key"])


# -- claims ------------------------------------------------------------------------------------


def test_a_job_no_longer_queued_is_left_alone(two: Harness) -> None:
    job_id = two.new_job()
    two.set_row(job_id, status="canceled")
    job = two.submit(job_id)
    assert job.status == "canceled" and job.attempts == 0
    assert two.vendor("ark").requests == []


def test_a_stale_hand_out_lease_changes_nothing(two: Harness) -> None:
    two.vendor("ark").script(submit=[fake.task("t-1")])
    job_id = two.new_job()
    two.submit(job_id)
    before = two.job(job_id)
    two.hand_out(job_id)
    pipeline.run_advance(two.ctx, job_id, "not-the-lease")
    after = two.job(job_id)
    assert (after.stage, after.poll_count) == (before.stage, before.poll_count)
    assert two.vendor("ark").polled == []


# -- no route, bad inputs, input trouble -------------------------------------------------------


def test_no_configured_vendor_for_the_pin_fails_the_job(two: Harness) -> None:
    job_id = two.new_job(pin="kie")  # kie does not serve seededit-3.0, and is not configured
    job = two.submit(job_id)
    assert job.status == "failed"
    assert job.error["code"] == "provider_unavailable"
    assert "seededit-3.0" in job.error["message"]


def test_an_unusable_url_input_fails_the_job_as_invalid_image(two: Harness) -> None:
    two.user_images[IMAGE_URL] = lambda r: httpx.Response(404)
    job = two.submit(two.new_job(url=IMAGE_URL))
    assert job.status == "failed"
    assert job.error["code"] == "invalid_image"
    assert two.vendor("ark").requests == []


@pytest.mark.parametrize("trouble", ["fetch", "storage"])
def test_input_trouble_on_our_side_retries_the_step_later(two: Harness, trouble: str) -> None:
    if trouble == "fetch":
        two.user_images[IMAGE_URL] = lambda r: httpx.Response(503)
        job_id = two.new_job(url=IMAGE_URL)
    else:
        job_id = two.new_job()
        two.storage.fail("get", times=1)
    job = two.submit(job_id)
    assert (job.status, job.stage, job.attempts, job.poll_count) == ("running", "submit", 0, 1)
    kind, detail = two.events(job_id)[-1]
    assert kind == "step.retry" and detail["reason"].startswith("inputs:")
    two.user_images[IMAGE_URL] = png_answer
    assert two.advance(job_id).status == "succeeded"  # the trouble passed


# -- vendor capacity ---------------------------------------------------------------------------


def test_a_full_vendor_sends_the_job_to_the_next_one(sessions) -> None:
    h = make_harness(
        sessions, {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")}, ark_max_concurrent=1
    )
    blocker = h.new_job()
    h.limits.acquire_slot("ark", blocker, 60)
    h.set_row(blocker, status="running")
    job = h.submit(h.new_job())
    assert job.status == "succeeded" and job.provider == "vtrix"
    assert h.limits.slot_holders("ark") == [blocker]
    assert h.limits.slot_holders("vtrix") == []  # given back at the end


def test_a_full_vendor_whose_holder_ended_is_reclaimed(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_max_concurrent=1)
    ended = h.new_job()
    h.set_row(ended, status="canceled")
    h.limits.acquire_slot("ark", ended, 60)
    job = h.submit(h.new_job())
    assert job.status == "succeeded" and job.provider == "ark"
    assert ended not in h.limits.slot_holders("ark")


def test_no_vendor_with_room_reschedules_without_spending_an_attempt(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_max_concurrent=1)
    blocker = h.new_job()
    h.set_row(blocker, status="running")
    h.limits.acquire_slot("ark", blocker, 60)
    job_id = h.new_job()
    job = h.submit(job_id)
    assert (job.status, job.stage, job.attempts) == ("running", "submit", 0)
    kind, detail = h.events(job_id)[-1]
    assert kind == "provider.busy" and detail["retry_in"] >= 1
    assert h.vendor("ark").requests == []


def test_a_refused_slot_nobody_holds_reschedules(sessions) -> None:
    class Jammed(LocalLimits):
        def acquire_slot(self, provider, job_id, ttl_seconds) -> bool:
            return False

    h = make_harness(sessions, {"ark": FakeProvider("ark")})
    h.ctx.limits = Jammed({})
    job_id = h.new_job()
    assert h.submit(job_id).attempts == 0
    assert h.event_types(job_id)[-1] == "provider.busy"


def test_a_spent_request_rate_reschedules_for_the_rate_wait(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_rps=1)
    assert h.limits.acquire_request("ark", "someone-else") == 0
    job_id = h.new_job()
    job = h.submit(job_id)
    assert job.attempts == 0
    kind, detail = h.events(job_id)[-1]
    assert kind == "provider.busy" and 0 < detail["retry_in"] <= 1.2
    assert h.limits.slot_holders("ark") == []


def test_every_vendor_cooling_down_waits_for_the_first_to_come_back(two: Harness) -> None:
    two.limits.cool_down("ark", 40)
    two.limits.cool_down("vtrix", 30)
    job_id = two.new_job()
    two.submit(job_id)
    kind, detail = two.events(job_id)[-1]
    assert kind == "provider.busy" and 29 < detail["retry_in"] <= 30.1


def test_a_job_ended_before_its_vendor_call_makes_no_call(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, ark_max_concurrent=5)

    class CancelOnRequest(LocalLimits):
        def acquire_request(self, provider, request_id) -> float:
            h.set_row(request_id.split(":")[0], status="canceled")
            return 0.0

    h.ctx.limits = limits = CancelOnRequest(h.limits._limits)
    job = h.submit(h.new_job())
    assert job.status == "canceled" and job.attempts == 0
    assert h.vendor("ark").requests == []
    assert limits.slot_holders("ark") == []


# -- vendor failures at submit -----------------------------------------------------------------


def test_a_transient_failure_fails_over_to_the_next_vendor(two: Harness) -> None:
    two.vendor("ark").script(submit=[fake.unavailable()])
    job_id = two.new_job()
    job = two.submit(job_id)
    assert (job.status, job.stage, job.attempts) == ("running", "submit", 1)
    kind, detail = two.events(job_id)[-1]
    assert kind == "attempt.failed"
    assert detail == {"provider": "ark", "error": "provider_unavailable", "retry_in": 0.0}
    job = two.advance(job_id)
    assert job.status == "succeeded" and job.provider == "vtrix" and job.attempts == 2
    assert outcomes(job) == [("ark", "failed"), ("vtrix", "succeeded")]


def test_a_transient_failure_on_the_only_vendor_backs_off_and_retries_it(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.unavailable()])
    job_id = one.new_job()
    job = one.submit(job_id)
    assert job.stage == "submit"
    assert one.events(job_id)[-1][1]["retry_in"] > 0
    assert one.advance(job_id).status == "succeeded"


def test_a_vendor_refusing_for_good_is_never_tried_again(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.error("provider_error", "nope", provider_code="E1")])
    job = one.submit(one.new_job())
    assert job.status == "failed"
    assert job.error == {
        "code": "provider_error",
        "message": "nope",
        "provider": "ark",
        "provider_code": "E1",
        "retryable": False,
    }


@pytest.mark.parametrize("code", ["invalid_request", "content_rejected"])
def test_a_refusal_of_the_request_itself_ends_the_job_without_failover(
    two: Harness, code: str
) -> None:
    two.vendor("ark").script(submit=[fake.error(code, "refused")])
    job = two.submit(two.new_job())
    assert job.status == "failed" and job.error["code"] == code
    assert two.vendor("vtrix").requests == []


def test_the_retry_budget_spent_fails_the_job_with_the_last_vendor_error(sessions) -> None:
    h = make_harness(
        sessions, {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")}, max_attempts=2
    )
    h.vendor("ark").script(submit=[fake.unavailable()])
    h.vendor("vtrix").script(
        submit=[fake.error("provider_unavailable", "down too", retryable=True)]
    )
    job = h.run(h.new_job())
    assert job.status == "failed" and job.attempts == 2
    assert (job.error["provider"], job.error["message"]) == ("vtrix", "down too")


def test_a_429_cools_the_vendor_down_and_refunds_the_attempt(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.rate_limited(retry_after=3)])
    job_id = one.new_job()
    job = one.submit(job_id)
    assert (job.stage, job.attempts) == ("submit", 0)  # the 429 cost nothing
    assert 2 < one.limits.cooldown_left("ark") <= 3
    assert one.events(job_id)[-1][1]["error"] == "rate_limited"
    assert outcomes(job) == [("ark", "rate_limited")]


def test_a_429_without_retry_after_cools_down_for_five_seconds(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.rate_limited(retry_after=None)])
    one.submit(one.new_job())
    assert 4 < one.limits.cooldown_left("ark") <= 5


def test_a_retry_past_the_deadline_fails_the_job_now(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.rate_limited(retry_after=60)])
    job = one.submit(one.new_job(deadline_seconds=10))
    assert job.status == "failed" and job.error["code"] == "rate_limited"


def test_repeated_transient_failures_cool_the_vendor_down(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")}, provider_failure_threshold=1)
    h.vendor("ark").script(submit=[fake.unavailable()])
    h.submit(h.new_job())
    assert h.limits.cooldown_left("ark") > 0


def test_every_vendor_refused_for_good_ends_the_job_at_its_next_submit(two: Harness) -> None:
    two.vendor("ark").script(submit=[fake.error("provider_error", "not for us")])
    job_id = two.new_job()
    assert two.submit(job_id).stage == "submit"  # failing over to vtrix…
    del two.vendors["vtrix"]  # …which is gone by the time the job comes back
    job = two.advance(job_id)
    assert job.status == "failed"
    assert (job.error["code"], job.error["message"]) == ("provider_error", "not for us")


def test_a_failure_after_the_job_ended_only_notes_the_attempt(one: Harness) -> None:
    job_id = one.new_job()

    def cancel_then_fail():
        one.set_row(job_id, status="canceled")
        return fake.error("provider_error", "late")

    one.vendor("ark").script(submit=[cancel_then_fail])
    job = one.submit(job_id)
    assert job.status == "canceled" and job.error is None
    assert outcomes(job) == [("ark", "failed")]
    assert "attempt.failed" not in one.event_types(job_id)


def test_a_failure_after_the_lease_was_lost_only_notes_the_attempt(two: Harness) -> None:
    job_id = two.new_job()

    def take_over_then_fail():
        two.set_row(job_id, lease_id="someone-else")
        return fake.unavailable()

    two.vendor("ark").script(submit=[take_over_then_fail])
    job = two.submit(job_id)
    assert job.lease_id == "someone-else" and job.status == "running"
    assert outcomes(job) == [("ark", "failed")]
    assert "attempt.failed" not in two.event_types(job_id)


def test_a_task_created_after_the_job_ended_is_noted_not_followed(one: Harness) -> None:
    job_id = one.new_job()

    def cancel_then_accept():
        one.set_row(job_id, status="canceled")
        return fake.task("t-late")

    one.vendor("ark").script(submit=[cancel_then_accept])
    job = one.submit(job_id)
    assert job.status == "canceled"
    assert job.provider_task_id == "t-late"
    assert outcomes(job) == [("ark", "abandoned")]
    assert "provider.task_created" not in one.event_types(job_id)


# -- advance: deadline and budget ------------------------------------------------------------


def test_a_job_past_its_deadline_fails_with_timeout_when_advanced(one: Harness) -> None:
    one.vendor("ark").script(submit=[fake.task("t-1")])
    job_id = one.new_job()
    one.submit(job_id)
    one.set_row(job_id, deadline_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    job = one.advance(job_id)
    assert job.status == "failed" and job.error["code"] == "timeout"
    assert one.vendor("ark").polled == []


def test_a_budget_spent_by_calls_that_never_reported_back(one: Harness) -> None:
    job_id = one.new_job()  # as the sweep finds it after three workers died inside the call
    one.set_row(job_id, status="running", stage="submit", attempts=3)
    job = one.advance(job_id)
    assert job.status == "failed" and job.error["code"] == "provider_unavailable"
    assert "never reported back" in job.error["message"]


# -- the small pure pieces ---------------------------------------------------------------------


def test_poll_delay_backs_off_as_a_task_ages() -> None:
    assert pipeline.poll_delay(0) == 2.0
    assert pipeline.poll_delay(60) == 5.0
    assert pipeline.poll_delay(600, scale=2) == 30.0


def test_retry_delay_honours_a_longer_retry_after() -> None:
    assert pipeline.retry_delay(1, 45.0) == 45.0
    assert 1.6 <= pipeline.retry_delay(1, None) <= 2.4


def test_available_is_false_for_vendors_that_cannot_be_built(one: Harness) -> None:
    assert one.ctx.available("ark") is True
    assert one.ctx.available("kie") is False


# -- a step that lost its lease changes nothing ------------------------------------------------


def test_a_busy_vendor_seen_after_a_takeover_leaves_the_new_owner_alone(sessions) -> None:
    h = make_harness(sessions, {"ark": FakeProvider("ark")})

    class TakeOverThenRefuse(LocalLimits):
        def acquire_slot(self, provider, job_id, ttl_seconds) -> bool:
            h.set_row(job_id, lease_id="someone-else")
            return False

    h.ctx.limits = TakeOverThenRefuse({})
    job_id = h.new_job()
    job = h.submit(job_id)
    assert job.lease_id == "someone-else"
    assert "provider.busy" not in h.event_types(job_id)


def test_input_trouble_seen_after_a_takeover_leaves_the_new_owner_alone(two: Harness) -> None:
    job_id = two.new_job(url=IMAGE_URL)

    def take_over_then_fail(request: httpx.Request) -> httpx.Response:
        two.set_row(job_id, lease_id="someone-else")
        return httpx.Response(503)

    two.user_images[IMAGE_URL] = take_over_then_fail
    job = two.submit(job_id)
    assert (job.lease_id, job.poll_count) == ("someone-else", 0)
    assert "step.retry" not in two.event_types(job_id)
