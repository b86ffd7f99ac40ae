"""The worker records what attempts cost: billed unusable results count, empty ones do not."""

from __future__ import annotations

import json

from editqueue.providers import fake
from editqueue.providers.fake import FakeProvider
from tests.unit.provider_fakes import make_harness

PRICES = json.dumps({"ark/seededit-3.0": {"per_image": "0.02"}})
BILLED = {"amount": "0.020000", "currency": "USD", "source": "estimated"}


def test_an_unusable_image_the_vendor_made_is_billed_even_though_the_job_fails(sessions) -> None:
    one = make_harness(sessions, {"ark": FakeProvider("ark")}, prices=PRICES)
    one.vendor("ark").script(submit=[fake.bad_output()])
    job = one.submit(one.new_job())
    assert job.status == "failed"
    assert [a.get("cost") for a in job.attempt_log] == [BILLED]
    assert (job.usage or {})["cost"] == BILLED


def test_a_success_without_images_costs_nothing(sessions) -> None:
    one = make_harness(sessions, {"ark": FakeProvider("ark")}, prices=PRICES)
    one.vendor("ark").script(submit=[fake.empty_output()])
    job = one.submit(one.new_job())
    assert job.status == "failed"
    assert [a.get("cost") for a in job.attempt_log] == [None]
    assert "cost" not in (job.usage or {})
