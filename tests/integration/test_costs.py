"""Cost per job on the live stack: reported by Vtrix and KIE, estimated elsewhere, summed
over billed attempts, nothing for failures the vendor did not bill."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from editqueue.config import load_settings
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.infra.storage import open_configured_storage
from editqueue.jobs.lifecycle import cancel_job
from editqueue.models import Job
from editqueue.tenants import create_tenant
from tests.conftest import Receiver, TenantClient, data_url, editqueue_cli, make_tenant, png_bytes
from tests.integration.test_webhook_engine import _running_job
from tests.stack import Stack, private_stack

# Vtrix's and KIE's table prices are set far from what they report, so a reported figure
# cannot pass for an estimate.
PRICES = {
    "ark/seededit-3.0": {"per_image": "0.02"},
    "cometapi/seededit-3.0": {"per_image": "0.025"},
    "acedata/seededit-3.0": {"per_image": "0.015"},
    "vtrix/seededit-3.0": {"per_image": "0.5"},
    "kie/seedream-4.0-edit": {"per_image": "0.4"},
}
KIE_CREDIT_PRICE = "0.005"  # the sandbox consumes 5 credits per image: 0.025 per image


def cost(amount: str, source: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD", "source": source}


@pytest.fixture(scope="module")
def cost_stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    """A private stack (own database and Redis) with a price table and a KIE credit price."""
    workdir = tmp_path_factory.mktemp("cost-stack")
    with private_stack(
        database_url,
        workdir,
        {
            "EDITQUEUE_PRICES": json.dumps(PRICES),
            "EDITQUEUE_KIE_CREDIT_PRICE": KIE_CREDIT_PRICE,
            "EDITQUEUE_PROVIDER_TIMEOUT": "30",
            "SANDBOX_LATENCY": "0.3",
        },
    ) as stack:
        yield stack


@pytest.fixture
def payer(cost_stack: Stack) -> Iterator[TenantClient]:
    engine = make_engine(cost_stack.database_url, pool_size=1, max_overflow=0)
    tenant = make_tenant(make_session_factory(engine), cost_stack.api_url)
    cost_stack.sandbox_reset()
    yield tenant
    tenant.client.close()
    engine.dispose()


def _job(tenant: TenantClient, vendor: str, **extra: Any) -> str:
    model = "seedream-4.0-edit" if vendor == "kie" else "seededit-3.0"
    body = {"model": model, "prompt": f"cost on {vendor}", "image": data_url(png_bytes())}
    return tenant.create_job(**body, provider=vendor, **extra)["id"]


def _attempts(job: dict[str, Any]) -> list[tuple[str, str, dict | None]]:
    return [(a["provider"], a["outcome"], a.get("cost")) for a in job["usage"]["attempts"]]


def test_each_vendor_records_a_cost_reported_or_estimated(payer: TenantClient) -> None:
    expected = {
        "vtrix": cost("0.030000", "reported"),  # the sandbox's usage.cost
        "kie": cost("0.025000", "reported"),  # 5 credits × 0.005
        "ark": cost("0.020000", "estimated"),
        "cometapi": cost("0.025000", "estimated"),
        "acedata": cost("0.015000", "estimated"),
    }
    ids = {vendor: _job(payer, vendor) for vendor in expected}
    for vendor, job_id in ids.items():
        done = payer.wait_job(job_id, timeout=60)
        assert done["status"] == "succeeded", done
        assert done["provider"] == vendor
        assert done["usage"]["cost"] == expected[vendor], (vendor, done["usage"])
        assert _attempts(done) == [(vendor, "succeeded", expected[vendor])]


def test_a_billed_failure_and_its_retry_add_up(cost_stack: Stack, payer: TenantClient) -> None:
    # KIE ends the first task failed but still consumes 4 credits for it.
    cost_stack.sandbox_fault("kie", "create", "task_fail", count=1, credits=4)
    done = payer.wait_job(_job(payer, "kie"), timeout=60)
    assert done["status"] == "succeeded", done
    assert _attempts(done) == [
        ("kie", "failed", cost("0.020000", "reported")),
        ("kie", "succeeded", cost("0.025000", "reported")),
    ]
    assert done["usage"]["cost"] == cost("0.045000", "reported")


def test_a_failed_job_keeps_what_its_billed_attempts_cost(
    cost_stack: Stack, payer: TenantClient
) -> None:
    cost_stack.sandbox_fault("kie", "create", "task_fail", count=10, credits=2)
    done = payer.wait_job(_job(payer, "kie"), timeout=60)
    assert done["status"] == "failed", done
    per_attempt = cost("0.010000", "reported")
    assert {c["amount"] for _, _, c in _attempts(done) if c} == {per_attempt["amount"]}
    total = sum(float(c["amount"]) for _, _, c in _attempts(done) if c)
    assert done["usage"]["cost"] == cost(f"{total:.6f}", "reported")
    assert len(_attempts(done)) == done["attempts"] >= 2


@pytest.mark.parametrize("vendor", ["kie", "vtrix"])
def test_unbilled_failures_cost_nothing(
    cost_stack: Stack, payer: TenantClient, vendor: str
) -> None:
    cost_stack.sandbox_fault(vendor, "create", "task_fail", count=10)
    done = payer.wait_job(_job(payer, vendor), timeout=60)
    assert done["status"] == "failed", done
    assert all(c is None for _, _, c in _attempts(done)), done["usage"]
    assert "cost" not in done["usage"]


def test_an_unbilled_503_before_a_success_adds_nothing(
    cost_stack: Stack, payer: TenantClient
) -> None:
    cost_stack.sandbox_fault("ark", "create", "server_error", count=1, status=503)
    done = payer.wait_job(_job(payer, "ark"), timeout=60)
    assert done["status"] == "succeeded", done
    assert _attempts(done) == [
        ("ark", "failed", None),
        ("ark", "succeeded", cost("0.020000", "estimated")),
    ]
    assert done["usage"]["cost"] == cost("0.020000", "estimated")


def test_the_webhook_payload_carries_the_cost(payer: TenantClient, receiver: Receiver) -> None:
    job_id = _job(payer, "vtrix", webhook_url=receiver.url)
    done = payer.wait_job(job_id, timeout=60)
    assert done["status"] == "succeeded", done
    receiver.wait_for(1, timeout=30)
    [delivery] = [r for r in receiver.for_job(job_id) if r.json()["type"] == "job.succeeded"]
    assert delivery.json()["data"]["usage"]["cost"] == cost("0.030000", "reported")


def test_the_cli_summary_and_the_console_show_the_cost(
    cost_stack: Stack, payer: TenantClient
) -> None:
    job_id = _job(payer, "vtrix")
    assert payer.wait_job(job_id, timeout=60)["status"] == "succeeded"
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EDITQUEUE_")}
    env |= {"EDITQUEUE_API_URL": cost_stack.api_url, "EDITQUEUE_API_KEY": payer.key}
    shown = editqueue_cli("jobs", "get", job_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^cost\s+0\.030000 USD \(reported\)$", shown.stdout, re.M), shown.stdout

    with httpx.Client(base_url=cost_stack.api_url, timeout=30) as browser:
        form = browser.get("/console/login").text
        match = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert match, form
        signed_in = browser.post(
            "/console/login", data={"api_key": payer.key, "csrf_token": match.group(1)}
        )
        assert signed_in.status_code in (302, 303), signed_in.text
        page = browser.get(f"/console/jobs/{job_id}")
    assert page.status_code == 200
    html = re.sub(r"\s+", " ", page.text)
    assert "<dt>Cost</dt><dd>0.030000 USD" in html and "(reported)" in html


def test_a_canceled_job_keeps_what_its_earlier_attempts_were_billed(
    sessions: Any,
) -> None:
    billed = {"provider": "kie", "outcome": "failed", "cost": cost("0.025000", "reported")}
    unbilled = {"provider": "ark", "outcome": "failed"}
    with transaction(sessions) as session:
        tenant = create_tenant(session, new_id("t"))
        job = _running_job(new_id("job"), tenant.id)
        job.attempt_log = [billed, unbilled]
        session.add(job)
    settings = load_settings(storage_url="memory://")
    storage = open_configured_storage(settings)
    with transaction(sessions) as session:
        cancel_job(session, tenant.id, job.id, storage=storage, settings=settings)
    with sessions() as session:
        ended = session.get_one(Job, job.id)
    assert ended.status == "canceled"
    assert ended.usage["cost"] == cost("0.025000", "reported")
