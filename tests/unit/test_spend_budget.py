"""The pure parts of tenant budgets: months, estimates, the 402's amounts, the threshold
payload, and the operator-side validation of budget fields."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from pydantic import SecretStr

from editqueue.config import Settings
from editqueue.errors import InvalidRequest
from editqueue.jobs.states import NewJob
from editqueue.spend import budget
from editqueue.tenants import check_alert_ratio, check_budget, check_retention_days

PRICES = json.dumps(
    {
        "ark/seededit-3.0": {"per_image": "0.03"},
        "vtrix/seededit-3.0": {"per_image": "0.05"},
        "ark/seedream-4.0-edit": {"per_image": "0.02"},
    }
)
SETTINGS = Settings(ark_api_key=SecretStr("k"), vtrix_api_key=SecretStr("k"), prices=PRICES)


def _new(model: str = "seededit-3.0", pin: str | None = None, **params: object) -> NewJob:
    return NewJob(
        model=model,
        prompt="p",
        params=dict(params),
        inputs=[],
        provider_pin=pin,
        provider_options={},
        webhook_url=None,
        webhook_events=[],
        metadata={},
        deadline_seconds=60,
    )


def test_month_of_is_the_first_day_in_utc() -> None:
    assert budget.month_of(dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 1)
    # 00:30 on 1 January in UTC+2 is still December in UTC.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert budget.month_of(dt.datetime(2027, 1, 1, 0, 30, tzinfo=plus_two)) == dt.date(2026, 12, 1)


def test_a_routed_job_reserves_the_dearest_vendor_and_a_pinned_one_its_own() -> None:
    assert budget.job_estimate(SETTINGS, _new()) == Decimal("0.05")
    assert budget.job_estimate(SETTINGS, _new(pin="ark")) == Decimal("0.03")
    # The sandbox pin is the normal route.
    assert budget.job_estimate(SETTINGS, _new(pin="sandbox")) == Decimal("0.05")


def test_the_estimate_counts_requested_outputs_and_is_none_when_unknown() -> None:
    assert budget.job_estimate(SETTINGS, _new("seedream-4.0-edit", n=3)) == Decimal("0.06")
    unpriced = Settings(
        ark_api_key=SecretStr("k"), prices=json.dumps({"ark/seedream-4.0-edit": None})
    )
    assert budget.job_estimate(unpriced, _new("seededit-3.0")) is None
    assert budget.job_estimate(unpriced, _new("seedream-4.0-edit")) is None


def test_total_estimate_sums_known_ones_only() -> None:
    assert budget.total_estimate([Decimal("1.5"), None, Decimal("2")]) == Decimal("3.5")
    assert budget.total_estimate([None, None]) is None
    assert budget.total_estimate([]) is None


def test_usage_cost_reads_the_amount_and_ignores_anything_else() -> None:
    assert budget.usage_cost({"cost": {"amount": "0.120000", "currency": "USD"}}) == Decimal("0.12")
    for usage in (None, {}, {"cost": None}, {"cost": {"amount": "x"}}, {"cost": {"amount": "-1"}}):
        assert budget.usage_cost(usage) == 0
    assert budget.usage_cost({"cost": {"amount": "NaN"}}) == 0


def test_budget_of_a_tenant_defaults_its_alert_ratio() -> None:
    assert budget.Budget.of(None, Decimal("0.5")) is None
    default = budget.Budget.of(Decimal("100"), None)
    assert default is not None and default.alert_ratio == Decimal("0.8")
    assert default.threshold == Decimal("80")
    own = budget.Budget.of(Decimal("100"), Decimal("0.25"))
    assert own is not None and own.threshold == Decimal("25")


def test_budget_exceeded_carries_its_amounts_as_decimal_strings() -> None:
    exc = budget.BudgetExceeded(
        budget=Decimal("10"),
        spent=Decimal("4"),
        reserved=Decimal("5.5"),
        estimate=Decimal("1"),
        currency="USD",
    )
    assert exc.status == 402 and exc.code == "budget_exceeded"
    assert exc.left == Decimal("0.5")
    assert exc.extensions == {
        "budget": "10.000000",
        "spent": "4.000000",
        "reserved": "5.500000",
        "left": "0.500000",
        "estimate": "1.000000",
        "currency": "USD",
    }
    assert "0.500000 USD" in exc.detail
    # Spend past the budget (a job that cost more than its estimate) leaves 0, not less.
    over = budget.BudgetExceeded(
        budget=Decimal("1"),
        spent=Decimal("3"),
        reserved=Decimal(0),
        estimate=Decimal("1"),
        currency="EUR",
    )
    assert over.extensions["left"] == "0.000000"


def test_threshold_crossing_and_its_payload() -> None:
    limit = budget.Budget(Decimal("10"), Decimal("0.8"))
    month = dt.date(2026, 12, 1)
    below = budget.Spend(month, spent=Decimal("3"), reserved=Decimal("4.99"))
    at = budget.Spend(month, spent=Decimal("3"), reserved=Decimal("5"))
    fired = budget.Spend(month, Decimal("9"), Decimal(0), dt.datetime.now(dt.UTC))
    assert not budget.crossed(below, limit)
    assert budget.crossed(at, limit)
    assert not budget.crossed(fired, limit)  # once a month
    data = budget.threshold_data("ten_1", at, limit, "USD")
    assert data == {
        "object": "budget_threshold",
        "tenant_id": "ten_1",
        "month": "2026-12",
        "budget": "10.000000",
        "alert_ratio": "0.8",
        "threshold": "8.000000",
        "spent": "3.000000",
        "reserved": "5.000000",
        "left": "2.000000",
        "currency": "USD",
    }


def test_budget_fields_are_validated() -> None:
    assert check_budget("250.00") == Decimal("250.00")
    assert check_budget(0) == 0
    assert check_budget(None) is None
    for bad in (-1, "lots", "1.0000001", True, "Infinity", 10**13, [1]):
        with pytest.raises(InvalidRequest):
            check_budget(bad)
    assert check_alert_ratio("0.8") == Decimal("0.8")
    assert check_alert_ratio(1) == 1
    for ratio in (0, "0", 1.01, -0.5, "x", "0.12345"):
        with pytest.raises(InvalidRequest):
            check_alert_ratio(ratio)
    assert check_retention_days(90) == 90
    assert check_retention_days(None) is None
    for days in (0, -1, 36_501, "30", True, 1.5):
        with pytest.raises(InvalidRequest):
            check_retention_days(days)
