"""The retry budget on the real stack: vendor failures end a job in seconds, not at its deadline.

`EDITQUEUE_MAX_ATTEMPTS` is left at its default (3) here, as README.md ("Retries") states it.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import TenantClient, data_url, png_bytes
from tests.stack import Stack

BUDGET = 3


def creates(stack: Stack, vendor: str) -> int:
    """The vendor's create requests so far (the sandbox's counters outlive each test)."""
    return stack.sandbox_stats()[vendor]["requests"].get("create", 0)


@pytest.mark.parametrize(
    ("model", "vendor", "provider_code", "message"),
    [
        ("seedream-4.0-edit", "kie", "500", "Internal server error"),
        ("seededit-3.0", "vtrix", "3014095", "Internal generation error"),
    ],
    ids=["kie-failCode-500", "vtrix-3014095"],
)
def test_a_failing_vendor_task_fails_the_pinned_job_within_its_budget(
    stack: Stack, tenant: TenantClient, model: str, vendor: str, provider_code: str, message: str
) -> None:
    stack.sandbox_fault(vendor, "create", "task_fail", count=10)
    before = creates(stack, vendor)
    started = time.monotonic()
    job = tenant.create_job(
        model=model, prompt="fails", image=data_url(png_bytes()), provider=vendor
    )
    done = tenant.wait_job(job["id"], timeout=40)
    elapsed = time.monotonic() - started
    assert done["status"] == "failed", done
    assert done["error"]["provider"] == vendor
    assert done["error"]["provider_code"] == provider_code
    assert done["error"]["message"] == message
    assert done["attempts"] == BUDGET
    attempts = done["usage"]["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [(vendor, "failed")] * BUDGET
    assert creates(stack, vendor) - before == BUDGET
    assert elapsed < 30, f"took {elapsed:.1f}s: the deadline, not the budget, ended it"


def test_the_budget_is_spent_along_the_route_before_the_job_fails(
    stack: Stack, tenant: TenantClient
) -> None:
    # seedream-4.0-edit routes kie → ark → cometapi → acedata; every vendor tried fails.
    for vendor in ("kie", "ark", "cometapi"):
        stack.sandbox_fault(vendor, "create", "task_fail", count=5)
    untouched = stack.sandbox_stats()["acedata"]["total"]
    job = tenant.create_job(model="seedream-4.0-edit", prompt="fails", image=data_url(png_bytes()))
    done = tenant.wait_job(job["id"], timeout=40)
    assert done["status"] == "failed", done
    attempts = done["usage"]["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        ("kie", "failed"),
        ("ark", "failed"),
        ("cometapi", "failed"),
    ]
    assert attempts[0]["provider_code"] == "500"  # KIE's failCode, then another vendor
    last = attempts[-1]
    assert done["error"]["provider"] == "cometapi"
    assert done["error"]["provider_code"] == last["provider_code"]
    assert done["error"]["message"] == last["reason"]
    assert stack.sandbox_stats()["acedata"]["total"] == untouched  # the budget ran out first


def test_a_failed_task_moves_to_another_vendor_first(stack: Stack, tenant: TenantClient) -> None:
    # An unknown failCode is no statement about the request: another vendor may do it.
    stack.sandbox_fault("kie", "create", "task_fail", count=1, code="9999", message="odd")
    job = tenant.create_job(model="seedream-4.0-edit", prompt="moves", image=data_url(png_bytes()))
    done = tenant.wait_job(job["id"], timeout=40)
    assert done["status"] == "succeeded", done
    outcomes = [(a["provider"], a["outcome"]) for a in done["usage"]["attempts"]]
    assert outcomes == [("kie", "failed"), ("ark", "succeeded")]
    assert done["attempts"] == 2


def test_429_waits_do_not_use_the_budget(stack: Stack, tenant: TenantClient) -> None:
    stack.sandbox_fault("ark", "create", "rate_limit", count=BUDGET, retry_after=1)
    before = creates(stack, "ark")
    job = tenant.create_job(
        model="seededit-3.0", prompt="patience", image=data_url(png_bytes()), provider="ark"
    )
    done = tenant.wait_job(job["id"], timeout=40)
    assert done["status"] == "succeeded", done
    outcomes = [a["outcome"] for a in done["usage"]["attempts"]]
    assert outcomes == ["rate_limited"] * BUDGET + ["succeeded"]
    assert done["attempts"] == 1
    assert creates(stack, "ark") - before == BUDGET + 1
