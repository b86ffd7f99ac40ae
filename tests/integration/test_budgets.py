"""Tenant budgets on a live stack: 402 with no job row, all-or-nothing batches, no overshoot
under 50 concurrent submissions, the threshold webhook once, settling at every job end, and
the operator controls (admin API, CLI).

A private stack (own database and Redis) prices SeedEdit at 1.00 per image on every vendor,
so each job's estimate is exactly 1.00 and, pinned to a vendor that reports no cost of its
own (ark), so is its cost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory
from editqueue.models import Batch, Job, TenantSpend
from tests.conftest import (
    Receiver,
    TenantClient,
    data_url,
    editqueue_cli,
    make_tenant,
    png_bytes,
    wait_until,
)
from tests.stack import Stack, private_stack

ADMIN_KEY = "admin-budget-key-0123456789"
VENDORS = ("ark", "vtrix", "cometapi", "acedata")
PRICES = {f"{vendor}/seededit-3.0": {"per_image": "1.00"} for vendor in VENDORS}
IMAGE = data_url(png_bytes())
SLOW = {"_sandbox": {"fault": "latency", "seconds": 2}}


@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("budget-stack")
    with private_stack(
        database_url,
        workdir,
        {
            "EDITQUEUE_PRICES": json.dumps(PRICES),
            "EDITQUEUE_ADMIN_KEY": ADMIN_KEY,
            "EDITQUEUE_MAX_ATTEMPTS": "1",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def factory(budget_stack: Stack) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(budget_stack.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def admin(budget_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=budget_stack.api_url,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def buyer(budget_stack: Stack, factory: sessionmaker[Session]) -> Iterator[TenantClient]:
    tenant = make_tenant(factory, budget_stack.api_url)
    yield tenant
    tenant.client.close()


def set_budget(admin: httpx.Client, tenant: TenantClient, **fields: Any) -> dict[str, Any]:
    response = admin.patch(f"/v1/admin/tenants/{tenant.id}", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def job_body(**extra: Any) -> dict[str, Any]:
    return {"model": "seededit-3.0", "prompt": "budget", "image": IMAGE, "provider": "ark", **extra}


def spend(factory: sessionmaker[Session], tenant: TenantClient) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of the tenant this month (zeros when nothing was counted)."""
    with factory() as session:
        rows = session.scalars(select(TenantSpend).where(TenantSpend.tenant_id == tenant.id)).all()
        assert len(rows) <= 1
        return (rows[0].spent, rows[0].reserved) if rows else (Decimal(0), Decimal(0))


def job_count(factory: sessionmaker[Session], tenant: TenantClient) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).where(Job.tenant_id == tenant.id)) or 0


def estimate_of(factory: sessionmaker[Session], job_id: str) -> Decimal | None:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.cost_estimate


def assert_budget_problem(response: httpx.Response, left: str, estimate: str) -> dict:
    assert response.status_code == 402, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "budget_exceeded"
    assert problem["type"].endswith("/budget_exceeded")
    assert problem["left"] == left and problem["estimate"] == estimate, problem
    assert problem["currency"] == "USD" and "budget" in problem and "reserved" in problem
    return problem


def test_a_budget_of_three_jobs_refuses_the_fourth_with_402_and_no_job_row(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="3.00")
    created = [buyer.create_job(**job_body()) for _ in range(3)]
    refused = buyer.client.post("/v1/jobs", json=job_body())
    problem = assert_budget_problem(refused, left="0.000000", estimate="1.000000")
    assert problem["budget"] == "3.000000"
    assert job_count(factory, buyer) == 3
    # The jobs end and are charged what they cost: the month is still full.
    for job in created:
        assert buyer.wait_job(job["id"], timeout=60)["status"] == "succeeded"
    assert wait_until(lambda: spend(factory, buyer) == (Decimal(3), Decimal(0)), timeout=20)
    assert buyer.client.post("/v1/jobs", json=job_body()).status_code == 402
    # A larger budget applies at once (the admin change drops cached key owners).
    set_budget(admin, buyer, monthly_budget="4")
    buyer.create_job(**job_body())
    assert job_count(factory, buyer) == 4


def test_a_job_of_unknown_price_is_admitted_and_reserves_nothing(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="0")
    assert buyer.client.post("/v1/jobs", json=job_body()).status_code == 402
    unpriced = buyer.create_job(model="seedream-4.0-edit", prompt="x", image=IMAGE, provider="kie")
    assert estimate_of(factory, unpriced["id"]) is None


def test_an_idempotent_replay_does_not_reserve_twice(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="2")
    headers = {"Idempotency-Key": "once"}
    body = job_body(provider_options=SLOW)
    first = buyer.client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202, first.text
    again = buyer.client.post("/v1/jobs", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert spend(factory, buyer)[1] == Decimal(1)
    assert estimate_of(factory, first.json()["id"]) == Decimal(1)
    buyer.wait_job(first.json()["id"], timeout=60)


def test_a_batch_that_does_not_fit_is_refused_whole(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="5")
    buyer.create_job(**job_body())
    too_big = {"defaults": job_body(), "jobs": [{} for _ in range(5)]}
    refused = buyer.client.post("/v1/batches", json=too_big)
    assert_budget_problem(refused, left="4.000000", estimate="5.000000")
    with factory() as session:
        assert session.scalar(select(func.count()).where(Batch.tenant_id == buyer.id)) == 0
    assert job_count(factory, buyer) == 1
    fits = buyer.client.post("/v1/batches", json={"defaults": job_body(), "jobs": [{}] * 4})
    assert fits.status_code == 202, fits.text
    assert job_count(factory, buyer) == 5
    with factory() as session:
        estimates = session.scalars(
            select(Job.cost_estimate).where(Job.batch_id == fits.json()["id"])
        ).all()
    assert estimates == [Decimal(1)] * 4


def test_50_concurrent_submissions_never_overshoot_the_budget(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="10")
    body = job_body(provider_options=SLOW)

    def submit(_: int) -> int:
        for _attempt in range(20):
            response = buyer.client.post("/v1/jobs", json=body)
            if response.status_code != 429:
                return response.status_code
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return 429

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(submit, range(50)))
    assert sorted(set(statuses)) == [202, 402], statuses
    # Every estimate is exactly 1.00 and the budget 10: exactly ten fit.
    assert statuses.count(202) == 10
    assert job_count(factory, buyer) == 10
    spent, reserved = spend(factory, buyer)
    assert spent + reserved <= Decimal(10)


def test_the_threshold_webhook_fires_once(
    admin: httpx.Client,
    buyer: TenantClient,
    receiver: Receiver,
    factory: sessionmaker[Session],
) -> None:
    endpoint = buyer.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, "events": ["tenant.budget_threshold"]}
    )
    assert endpoint.status_code == 201, endpoint.text
    set_budget(admin, buyer, monthly_budget="5", budget_alert_ratio="0.5")
    jobs = [buyer.create_job(**job_body()) for _ in range(5)]  # crosses 2.5 at the third
    for job in jobs:
        buyer.wait_job(job["id"], timeout=60)
    [hook] = receiver.wait_for(1, timeout=30)
    time.sleep(3)  # settling the five jobs must not fire it again
    assert len(receiver.requests) == 1
    payload = hook.json()
    assert payload["type"] == "tenant.budget_threshold"
    data = payload["data"]
    assert data["object"] == "budget_threshold" and data["tenant_id"] == buyer.id
    assert data["budget"] == "5.000000" and data["alert_ratio"] == "0.5"
    assert data["threshold"] == "2.500000" and data["currency"] == "USD"
    assert Decimal(data["spent"]) + Decimal(data["reserved"]) == Decimal(3)
    with factory() as session:
        row = session.scalars(select(TenantSpend).where(TenantSpend.tenant_id == buyer.id)).one()
        assert row.threshold_fired_at is not None


def test_settling_frees_the_reservation_at_every_kind_of_end(
    admin: httpx.Client, buyer: TenantClient, factory: sessionmaker[Session]
) -> None:
    set_budget(admin, buyer, monthly_budget="100")
    slow = buyer.create_job(**job_body(provider_options=SLOW))
    canceled = buyer.create_job(**job_body(provider_options=SLOW))
    refused = buyer.create_job(**job_body(provider_options={"_sandbox": {"fault": "moderation"}}))
    batch = buyer.client.post(
        "/v1/batches", json={"defaults": job_body(provider_options=SLOW), "jobs": [{}, {}]}
    )
    assert batch.status_code == 202, batch.text
    assert spend(factory, buyer)[1] >= Decimal(4)
    assert buyer.client.post(f"/v1/jobs/{canceled['id']}/cancel").status_code == 200
    assert buyer.client.post(f"/v1/batches/{batch.json()['id']}/cancel").status_code == 200
    batch_jobs = [{"id": job_id} for job_id in batch.json()["job_ids"]]
    ended = {
        j["id"]: buyer.wait_job(j["id"], timeout=60) for j in (slow, refused, canceled, *batch_jobs)
    }
    assert ended[slow["id"]]["status"] == "succeeded"
    assert ended[refused["id"]]["status"] == "failed"
    cost = sum(
        (Decimal(((j.get("usage") or {}).get("cost") or {}).get("amount", "0")))
        for j in ended.values()
    )
    # Nothing stays reserved; the month is charged exactly the jobs' recorded costs.
    assert wait_until(lambda: spend(factory, buyer) == (cost, Decimal(0)), timeout=20)
    assert cost >= Decimal(1)  # at least the succeeded job was billed


def test_admin_patch_sets_and_clears_the_budget_fields(
    admin: httpx.Client, buyer: TenantClient
) -> None:
    shown = set_budget(
        admin, buyer, monthly_budget="12.5", budget_alert_ratio=0.75, retention_days=30
    )
    assert shown["monthly_budget"] == "12.500000"
    assert shown["budget_alert_ratio"] == "0.75" and shown["retention_days"] == 30
    # Fields not sent stay; null clears.
    again = set_budget(admin, buyer, budget_alert_ratio=None)
    assert again["monthly_budget"] == "12.500000" and again["budget_alert_ratio"] is None
    cleared = set_budget(admin, buyer, monthly_budget=None, retention_days=None)
    assert cleared["monthly_budget"] is None and cleared["retention_days"] is None
    for body in ({"monthly_budget": -1}, {"budget_alert_ratio": 0}, {"retention_days": 0}):
        response = admin.patch(f"/v1/admin/tenants/{buyer.id}", json=body)
        assert response.status_code == 422, (body, response.text)
    assert admin.get(f"/v1/admin/tenants/{buyer.id}").json() == cleared


def test_cli_sets_and_shows_the_budget_and_this_months_spend(
    budget_stack: Stack, buyer: TenantClient
) -> None:
    env = {"DATABASE_URL": budget_stack.database_url, "REDIS_URL": budget_stack.redis_url}

    def run(*args: str) -> str:
        result = editqueue_cli("tenants", *args, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = run(
        "set",
        buyer.name,
        "--monthly-budget",
        "250.00",
        "--budget-alert",
        "0.8",
        "--retention-days",
        "90",
    )
    assert "monthly_budget=250.000000" in out and "retention_days=90" in out
    job = buyer.create_job(**job_body())
    buyer.wait_job(job["id"], timeout=60)
    time.sleep(0.5)
    shown = run("show", buyer.name)
    assert "monthly_budget: 250.000000" in shown
    assert "budget_alert_ratio: 0.8" in shown and "retention_days: 90" in shown
    assert "spend_spent: 1.000000 USD" in shown
    assert "spend_left: 249.000000 USD" in shown
    cleared = run("set", buyer.name, "--monthly-budget", "none", "--retention-days", "none")
    assert "monthly_budget=none" in cleared and "retention_days=default" in cleared
    assert "monthly_budget: none" in run("show", buyer.name)
    bad = editqueue_cli("tenants", "set", buyer.name, "--budget-alert", "2", env=env, timeout=60)
    assert bad.returncode != 0 and "budget_alert_ratio" in bad.stderr
    assert "Traceback" not in bad.stderr
