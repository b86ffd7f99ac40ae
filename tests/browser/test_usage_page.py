"""The console's Usage page in a real browser: this month's totals, the daily charts, isolation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import transaction
from editqueue.ids import new_id
from editqueue.models import Job
from tests.conftest import TenantClient, data_url, png_bytes


def _billed_job(tenant_id: str, created: dt.datetime, amount: str, outputs: list) -> Job:
    """A finished job written directly, as one from earlier in the month would be stored."""
    return Job(
        id=new_id("job"),
        tenant_id=tenant_id,
        status="succeeded",
        model="seededit-3.0",
        provider="vtrix",
        prompt="earlier",
        params={},
        provider_options={},
        inputs=[],
        outputs=outputs,
        attempts=1,
        poll_count=0,
        meta={},
        webhook_events=[],
        usage={"cost": {"amount": amount, "currency": "USD", "source": "reported"}},
        deadline_at=created + dt.timedelta(hours=1),
        created_at=created,
    )


def test_usage_page_charts_this_months_cost_and_jobs(
    page,
    sign_in,
    shoot,
    tenant: TenantClient,
    other_tenant: TenantClient,
    stack,
    sessions: sessionmaker[Session],
) -> None:
    image = data_url(png_bytes())
    # Ark's Seedream has a shipped price: a real, estimated cost; the refused one costs nothing.
    body = {"model": "seedream-4.0-edit", "prompt": "snow", "image": image, "provider": "ark"}
    jobs = [
        tenant.create_job(**body),
        tenant.create_job(**body, provider_options={"_sandbox": {"fault": "moderation"}}),
    ]
    done = [tenant.wait_job(j["id"], timeout=60) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded", "failed"]
    now = dt.datetime.now(dt.UTC)
    earlier_day = 1 if now.day != 1 else 2
    earlier = now.replace(day=earlier_day, hour=12, minute=0, second=0, microsecond=0)
    with transaction(sessions) as session:
        # The stored outputs of the real job: the jobs page must still render these rows.
        outputs = session.get(Job, done[0]["id"]).outputs  # type: ignore[union-attr]
        session.add(_billed_job(tenant.id, earlier, "1.500000", outputs))
        session.add(_billed_job(other_tenant.id, earlier, "99.000000", outputs))
    live_cost = sum(
        (Decimal(j["usage"]["cost"]["amount"]) for j in done if (j["usage"] or {}).get("cost")),
        Decimal(0),
    )
    assert live_cost > 0, done[0]["usage"]

    sign_in(page, tenant)
    page.click("nav >> text=Usage")
    page.wait_for_url("**/console/usage")
    assert page.get_attribute("nav a.active", "href") == "/console/usage"
    assert page.inner_text("#total-jobs") == "3"
    assert page.inner_text("#total-succeeded") == "2"
    assert page.inner_text("#total-failed") == "1"
    assert Decimal(page.inner_text("#total-cost")) == live_cost + Decimal("1.5")

    def height(chart: str, day: dt.datetime, cls: str = "") -> float:
        selector = f'#{chart} g[data-day="{day:%Y-%m-%d}"] rect{cls}'
        return float(page.get_attribute(selector, "height") or "nan")

    # The dearest day reaches the top of the chart; a day without jobs has no bar.
    assert height("cost-chart", earlier) == 120.0
    if earlier.date() != now.date():
        assert 0 < height("cost-chart", now) < 120.0
        assert height("jobs-chart", now, ".seg-succeeded") == 60.0
        assert height("jobs-chart", now, ".seg-failed") == 60.0
    days = page.locator("#cost-chart g").count()
    assert 28 <= days <= 31
    empty = next(d for d in range(1, days + 1) if d not in (earlier.day, now.day))
    assert height("cost-chart", now.replace(day=empty)) == 0.0
    assert page.locator("#usage-days tbody tr").count() == len({earlier.date(), now.date()})
    providers = page.locator("#usage-providers tbody tr")
    assert sorted(providers.evaluate_all("rows => rows.map(r => r.dataset.key)")) == [
        "ark",
        "vtrix",
    ]
    shoot(page, "usage")

    page.click("#prev-month")
    page.wait_for_url("**/console/usage?month=*")
    assert page.inner_text("#total-jobs") == "0"
    assert "No jobs this month." in page.inner_text("#usage-days")
    # A hand-edited month shows the current one instead of an error page.
    this_month = f"Usage · {now:%B %Y}"
    for month in ("0001-01", "9999-12", "2026-13", "<b>"):
        response = page.goto(f"{stack.api_url}/console/usage?month={month}")
        assert response is not None and response.status == 200, month
        assert page.inner_text("h1") == this_month, month
