"""The usage report against real PostgreSQL and, end to end, real jobs on the sandbox.

The report's totals must equal the sum of the jobs' own `usage.cost`, its counts the jobs'
statuses, and another tenant's jobs must never show up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.models import Job
from editqueue.spend.report import UsageRow, usage_report
from editqueue.tenants import create_tenant
from tests.conftest import TenantClient, data_url, editqueue_cli, make_tenant, png_bytes
from tests.integration.test_sdk_async import run_in_own_loop
from tests.stack import Stack, private_stack

UTC = dt.UTC
PRICES = {
    "ark/seededit-3.0": {"per_image": "0.030000"},
    "cometapi/seededit-3.0": {"per_image": "0.045000"},
    "acedata/seededit-3.0": {"per_image": "0.041000"},
}


# -- the query, on rows written directly ----------------------------------------------------


def _job(tenant_id: str, created: dt.datetime, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": new_id("job"),
        "tenant_id": tenant_id,
        "status": "succeeded",
        "model": "seededit-3.0",
        "provider": "ark",
        "prompt": "p",
        "params": {},
        "provider_options": {},
        "inputs": [],
        "outputs": [],
        "attempts": 1,
        "poll_count": 0,
        "meta": {},
        "webhook_events": [],
        "deadline_at": created + dt.timedelta(hours=1),
        "created_at": created,
        **fields,
    }
    return Job(**values)


def _cost(amount: str, currency: str = "USD") -> dict[str, Any]:
    return {"cost": {"amount": amount, "currency": currency, "source": "estimated"}}


OUT = [{"key": "a"}, {"key": "b"}]


@pytest.fixture
def two_tenants(sessions: sessionmaker[Session]) -> Iterator[tuple[str, str]]:
    with transaction(sessions) as session:
        mine = create_tenant(session, new_id("t")).id
        theirs = create_tenant(session, new_id("t")).id
        t = dt.datetime(2026, 3, 1, tzinfo=UTC)
        session.add_all(
            [
                # In the window [Mar 1, Apr 1): on the window's first instant, two days.
                _job(mine, t, outputs=OUT, usage=_cost("0.030000")),
                _job(
                    mine,
                    t + dt.timedelta(hours=23, minutes=59),
                    outputs=OUT[:1],
                    usage=_cost("0.5"),
                ),
                _job(
                    mine,
                    t + dt.timedelta(days=1),
                    provider="kie",
                    model="seedream-4.0-edit",
                    outputs=OUT[:1],
                    usage=_cost("1.25"),
                ),
                # Billed although it failed (a retried attempt the vendor charged).
                _job(mine, t + dt.timedelta(days=1), status="failed", usage=_cost("0.01")),
                _job(mine, t + dt.timedelta(days=1), status="canceled", provider=None),
                _job(mine, t + dt.timedelta(days=1), status="running", provider="vtrix"),
                # Succeeded at a vendor with no known price: counted, flagged, costs nothing.
                _job(
                    mine,
                    t + dt.timedelta(days=1),
                    provider="vtrix",
                    outputs=OUT[:1],
                    usage={"images": 1, "cost": None},
                ),
                # Another currency (the setting changed): not added into USD.
                _job(mine, t + dt.timedelta(days=1), usage=_cost("9", "EUR"), outputs=OUT[:1]),
                # Outside the window: the instant before, and the exclusive end.
                _job(mine, t - dt.timedelta(microseconds=1), usage=_cost("100")),
                _job(mine, dt.datetime(2026, 4, 1, tzinfo=UTC), usage=_cost("100")),
                # Another tenant, inside the window.
                _job(theirs, t + dt.timedelta(days=2), usage=_cost("1000"), outputs=OUT),
            ]
        )
    yield mine, theirs


def _report(sessions: sessionmaker[Session], tenant_id: str, group_by: str) -> Any:
    with sessions() as session:
        return usage_report(
            session,
            tenant_id,
            start=dt.datetime(2026, 3, 1, tzinfo=UTC),
            end=dt.datetime(2026, 4, 1, tzinfo=UTC),
            group_by=group_by,
            currency="USD",
        )


def test_day_rows_and_total_count_only_this_tenants_window(
    sessions: sessionmaker[Session], two_tenants: tuple[str, str]
) -> None:
    mine, _ = two_tenants
    result = _report(sessions, mine, "day")
    assert [r.key for r in result.rows] == ["2026-03-01", "2026-03-02"]
    assert result.rows[0] == UsageRow(
        "2026-03-01", jobs=2, images=3, succeeded=2, cost=Decimal("0.530000")
    )
    assert result.rows[1] == UsageRow(
        "2026-03-02",
        jobs=6,
        images=3,
        succeeded=3,
        failed=1,
        canceled=1,
        unpriced=1,
        cost=Decimal("1.260000"),
    )
    assert result.total == UsageRow(
        None,
        jobs=8,
        images=6,
        succeeded=5,
        failed=1,
        canceled=1,
        unpriced=1,
        cost=Decimal("1.790000"),
    )


def test_provider_and_model_rows(
    sessions: sessionmaker[Session], two_tenants: tuple[str, str]
) -> None:
    mine, theirs = two_tenants
    by_provider = {r.key: r for r in _report(sessions, mine, "provider").rows}
    assert list(by_provider) == ["ark", "kie", "vtrix", None]  # never-routed jobs last
    assert (by_provider["ark"].jobs, by_provider["ark"].cost) == (4, Decimal("0.54"))
    assert (by_provider["kie"].jobs, by_provider["kie"].cost) == (1, Decimal("1.25"))
    assert (by_provider["vtrix"].jobs, by_provider["vtrix"].unpriced) == (2, 1)
    assert by_provider[None].canceled == 1
    by_model = {r.key: (r.jobs, r.cost) for r in _report(sessions, mine, "model").rows}
    assert by_model == {
        "seededit-3.0": (7, Decimal("0.54")),
        "seedream-4.0-edit": (1, Decimal("1.25")),
    }
    theirs_total = _report(sessions, theirs, "day").total
    assert (theirs_total.jobs, theirs_total.images, theirs_total.cost) == (1, 2, Decimal(1000))


def test_a_tenant_without_jobs_gets_no_rows_and_zero_totals(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions) as session:
        empty = create_tenant(session, new_id("t")).id
    result = _report(sessions, empty, "provider")
    assert result.rows == [] and result.total == UsageRow(None)


# -- end to end: real jobs through the sandbox -----------------------------------------------


def _sum(jobs: list[dict[str, Any]]) -> Decimal:
    return sum(
        (Decimal(j["usage"]["cost"]["amount"]) for j in jobs if (j.get("usage") or {}).get("cost")),
        Decimal(0),
    )


def _counts(jobs: list[dict[str, Any]]) -> dict[str, int]:
    status = Counter(j["status"] for j in jobs)
    return {
        "jobs": len(jobs),
        "images": sum(len(j["outputs"]) for j in jobs),
        "succeeded": status["succeeded"],
        "failed": status["failed"],
        "canceled": status["canceled"],
    }


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("jobs", "images", "succeeded", "failed", "canceled")}


def run_cli(tenant: TenantClient, *args: str) -> subprocess.CompletedProcess[str]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EDITQUEUE_API")}
    env["EDITQUEUE_API_URL"] = str(tenant.client.base_url)
    env["EDITQUEUE_API_KEY"] = tenant.key
    return editqueue_cli(*args, env=env)


@pytest.fixture(scope="module")
def priced_stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    """A private stack (own database and Redis) whose price table knows the SeedEdit vendors."""
    workdir = tmp_path_factory.mktemp("usage-stack")
    with private_stack(
        database_url,
        workdir,
        {
            "EDITQUEUE_PRICES": json.dumps(PRICES),
            "EDITQUEUE_KIE_CREDIT_PRICE": "0.005",
            # Twenty jobs at once on a shared machine: no vendor call may time out.
            "EDITQUEUE_PROVIDER_TIMEOUT": "30",
            "SANDBOX_LATENCY": "0.3",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def finished(priced_stack: Stack) -> Iterator[tuple[TenantClient, TenantClient, list[dict]]]:
    """Jobs on all five vendors (some refused by the vendor, one canceled), for two tenants."""
    engine = make_engine(priced_stack.database_url)
    factory = make_session_factory(engine)
    mine, theirs = (
        make_tenant(factory, priced_stack.api_url),
        make_tenant(factory, priced_stack.api_url),
    )
    image = data_url(png_bytes())
    moderated = {"_sandbox": {"fault": "moderation"}}
    bodies: list[dict[str, Any]] = []
    for vendor in ("ark", "cometapi", "acedata", "vtrix"):
        bodies.append({"model": "seededit-3.0", "provider": vendor})
        bodies.append({"model": "seededit-3.0", "provider": vendor})
        bodies.append({"model": "seededit-3.0", "provider": vendor, "provider_options": moderated})
    bodies.append({"model": "seedream-4.0-edit", "provider": "kie"})
    bodies.append({"model": "seedream-4.0-edit", "provider": "kie", "provider_options": moderated})
    # Two outputs from one job: `images` counts outputs, not jobs.
    bodies.append({"model": "seedream-4.0-edit", "provider": "ark", "n": 2})
    created = [mine.create_job(prompt="usage", image=image, **b) for b in bodies]
    slow = mine.create_job(
        model="seededit-3.0",
        prompt="cancel me",
        image=image,
        provider="ark",
        provider_options={"_sandbox": {"fault": "latency", "seconds": 20}},
    )
    assert mine.client.post(f"/v1/jobs/{slow['id']}/cancel").status_code == 200
    theirs.wait_job(
        theirs.create_job(model="seededit-3.0", prompt="x", image=image, provider="ark")["id"],
        timeout=60,
    )
    jobs = [mine.wait_job(j["id"], timeout=90) for j in [*created, slow]]
    yield mine, theirs, jobs
    for client in (mine, theirs):
        client.client.close()
    engine.dispose()


def test_report_totals_equal_the_jobs_costs_and_statuses(
    finished: tuple[TenantClient, TenantClient, list[dict]],
) -> None:
    mine, _, jobs = finished
    statuses = Counter(j["status"] for j in jobs)
    assert statuses["succeeded"] >= 8 and statuses["failed"] >= 4 and statuses["canceled"] == 1
    # Every vendor with a known price (configured, reported, or KIE credits) billed something.
    billed = {j["provider"] for j in jobs if (j.get("usage") or {}).get("cost")}
    assert {"ark", "cometapi", "acedata"} <= billed, [j.get("usage") for j in jobs]
    response = mine.client.get("/v1/usage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["group_by"], body["currency"]) == ("usage", "day", "USD")
    month = dt.datetime.now(UTC).strftime("%Y-%m-01T00:00:00.000Z")
    assert body["from"] == month
    assert _row(body["total"]) == _counts(jobs)
    assert Decimal(body["total"]["cost"]["amount"]) == _sum(jobs) > 0
    by_day = defaultdict(list)
    for j in jobs:
        by_day[j["created_at"][:10]].append(j)
    assert {r["key"]: _row(r) for r in body["data"]} == {d: _counts(js) for d, js in by_day.items()}


@pytest.mark.parametrize("group_by", ["provider", "model"])
def test_rows_by_provider_and_model_match_the_jobs(
    finished: tuple[TenantClient, TenantClient, list[dict]], group_by: str
) -> None:
    mine, _, jobs = finished
    body = mine.client.get("/v1/usage", params={"group_by": group_by}).json()
    groups = defaultdict(list)
    for j in jobs:
        groups[j[group_by]].append(j)
    assert {r["key"] for r in body["data"]} == set(groups)
    for row in body["data"]:
        assert _row(row) == _counts(groups[row["key"]]), row["key"]
        assert Decimal(row["cost"]["amount"]) == _sum(groups[row["key"]]), row["key"]
    assert Decimal(body["total"]["cost"]["amount"]) == _sum(jobs)


def test_another_tenants_jobs_are_not_counted(
    finished: tuple[TenantClient, TenantClient, list[dict]],
) -> None:
    mine, theirs, jobs = finished
    body = theirs.client.get("/v1/usage", params={"group_by": "provider"}).json()
    assert body["total"]["jobs"] == 1 and [r["key"] for r in body["data"]] == ["ark"]
    assert mine.client.get("/v1/usage").json()["total"]["jobs"] == len(jobs)


def test_a_window_without_the_jobs_is_empty(
    finished: tuple[TenantClient, TenantClient, list[dict]],
) -> None:
    mine, _, _ = finished
    body = mine.client.get("/v1/usage", params={"from": "2020-01-01", "to": "2020-02-01"}).json()
    assert body["data"] == [] and body["total"]["jobs"] == 0
    assert body["total"]["cost"] == {"amount": "0.000000", "currency": "USD"}
    assert (body["from"], body["to"]) == ("2020-01-01T00:00:00.000Z", "2020-02-01T00:00:00.000Z")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "tenant"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-05-02", "to": "2026-05-01"}, "to"),
        ({"from": "2026-05-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "to"),
        ({"from": "2025-01-01", "to": "2026-06-01"}, "to"),
        ({"to": "0001-01-01T00:00:00Z"}, "to"),
        ({"from": "2026-01-01T00:00:00+25:00"}, "from"),
    ],
)
def test_bad_parameters_are_400_problems(
    finished: tuple[TenantClient, TenantClient, list[dict]], params: dict, field: str
) -> None:
    mine, _, _ = finished
    response = mine.client.get("/v1/usage", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_usage_query"
    assert problem["errors"][0]["field"] == field


def test_usage_needs_an_api_key(priced_stack: Stack) -> None:
    import httpx

    assert httpx.get(f"{priced_stack.api_url}/v1/usage").status_code == 401


def test_cli_prints_the_report_as_a_table_and_json(
    finished: tuple[TenantClient, TenantClient, list[dict]],
) -> None:
    mine, _, jobs = finished
    table = run_cli(mine, "usage", "--group-by", "provider")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("provider usage, ")
    assert lines[1].split() == [
        "KEY",
        "JOBS",
        "IMAGES",
        "SUCCEEDED",
        "FAILED",
        "CANCELED",
        "UNPRICED",
        "COST",
    ]
    total = lines[-1].split()
    assert total[0] == "TOTAL" and int(total[1]) == len(jobs)
    assert Decimal(total[-1]) == _sum(jobs)
    keys = {line.split()[0] for line in lines[2:-1]}
    assert keys == {j["provider"] or "-" for j in jobs}
    as_json = run_cli(mine, "usage", "--json", "--from", dt.datetime.now(UTC).strftime("%Y-%m-01"))
    assert as_json.returncode == 0, as_json.stderr
    parsed = json.loads(as_json.stdout)
    assert parsed["total"]["jobs"] == len(jobs) and parsed["group_by"] == "day"
    refused = run_cli(mine, "usage", "--from", "2026-05-02", "--to", "2026-05-01")
    assert refused.returncode != 0 and "from must be before to" in refused.stderr


def test_the_sdk_returns_the_report_typed(
    finished: tuple[TenantClient, TenantClient, list[dict]],
) -> None:
    from editqueue.client import AsyncClient, BadRequest, Client

    mine, _, jobs = finished
    with Client(str(mine.client.base_url), mine.key) as client:
        report = client.usage(group_by="model")
        with pytest.raises(BadRequest):
            client.usage(date_from="2026-05-02", date_to="2026-05-01")
    assert report.group_by == "model" and report.from_.endswith("-01T00:00:00.000Z")
    assert report.total.jobs == len(jobs)
    assert {r.key for r in report.data} == {j["model"] for j in jobs}
    assert Decimal(report.total.cost.amount) == _sum(jobs)

    by_provider: list[Any] = []

    async def fetch() -> None:
        async with AsyncClient(str(mine.client.base_url), mine.key) as client:
            by_provider.append(await client.usage(group_by="provider"))

    run_in_own_loop(fetch())  # the browser tests leave an event loop on this thread
    assert by_provider[0].total == report.total
