"""What an attempt cost: vendor-reported figures, estimates, and unbilled failures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from editqueue.config import Settings, load_settings
from editqueue.spend.cost import add_costs, attempt_cost, total_cost

PRICES = (
    '{"vtrix/seededit-3.0": {"per_image": "0.05"}, "kie/seedream-4.0-edit": {"per_image": "0.02"},'
    ' "cometapi/seededit-3.0": {"per_megapixel": "0.01"}}'
)


@pytest.fixture
def settings() -> Settings:
    return load_settings(prices=PRICES, kie_credit_price=Decimal("0.005"))


def cost(amount: str, source: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD", "source": source}


def test_vtrix_reported_cost_wins_over_the_table(settings: Settings) -> None:
    usage = {"cost": 0.03, "quantity": 1, "unit_price": 0.03}
    assert attempt_cost(settings, "vtrix", "seededit-3.0", usage, 1) == cost("0.030000", "reported")
    assert attempt_cost(settings, "vtrix", "seededit-3.0", {"cost": "0.1"}, 1) == cost(
        "0.100000", "reported"
    )


def test_vtrix_without_a_readable_cost_is_estimated(settings: Settings) -> None:
    for usage in ({}, {"cost": "n/a"}, {"cost": -1}, {"cost": True}, {"cost": None}):
        got = attempt_cost(settings, "vtrix", "seededit-3.0", usage, 1)
        assert got == cost("0.050000", "estimated")


def test_kie_credits_times_the_credit_price_are_reported(settings: Settings) -> None:
    got = attempt_cost(settings, "kie", "seedream-4.0-edit", {"consumeCredits": 10}, 2)
    assert got == cost("0.050000", "reported")


def test_kie_credits_without_a_credit_price_fall_back_to_the_estimate() -> None:
    settings = load_settings(prices=PRICES)
    got = attempt_cost(settings, "kie", "seedream-4.0-edit", {"consumeCredits": 10}, 2)
    assert got == cost("0.040000", "estimated")


def test_kie_zero_credits_on_a_failure_costs_nothing(settings: Settings) -> None:
    assert attempt_cost(settings, "kie", "seedream-4.0-edit", {"consumeCredits": 0}, 0) is None
    # Known to be unbilled even when no credit price is configured.
    bare = load_settings(prices=PRICES)
    assert attempt_cost(bare, "kie", "seedream-4.0-edit", {"consumeCredits": 0}, 0) is None


def test_kie_billed_failure_counts(settings: Settings) -> None:
    got = attempt_cost(settings, "kie", "seedream-4.0-edit", {"consumeCredits": 4}, 0)
    assert got == cost("0.020000", "reported")


def test_a_reported_zero_on_a_success_is_a_price(settings: Settings) -> None:
    got = attempt_cost(settings, "vtrix", "seededit-3.0", {"cost": 0}, 1)
    assert got == cost("0.000000", "reported")


def test_a_failure_without_output_or_reported_charge_costs_nothing(settings: Settings) -> None:
    assert attempt_cost(settings, "vtrix", "seededit-3.0", {}, 0) is None
    assert attempt_cost(settings, "cometapi", "seededit-3.0", None, 0) is None


def test_estimates_use_megapixels_and_unknown_prices_give_none(settings: Settings) -> None:
    got = attempt_cost(settings, "cometapi", "seededit-3.0", {}, 2, megapixels=1.5)
    assert got == cost("0.030000", "estimated")
    assert attempt_cost(settings, "acedata", "seededit-3.0", {"cost": 1}, 1) is None


def test_add_costs_sums_and_marks_mixed_sources() -> None:
    reported, estimated = cost("0.030000", "reported"), cost("0.015000", "estimated")
    assert add_costs(None, None) is None
    assert add_costs(reported, None) == reported and add_costs(None, estimated) == estimated
    assert add_costs(reported, reported) == cost("0.060000", "reported")
    assert add_costs(reported, estimated) == cost("0.045000", "mixed")
    assert add_costs(cost("0.045000", "mixed"), reported) == cost("0.075000", "mixed")
    with pytest.raises(ValueError, match="EUR"):
        add_costs(reported, {"amount": "1", "currency": "EUR", "source": "reported"})


def test_total_cost_sums_billed_attempts_only() -> None:
    entries: list[dict[str, object]] = [
        {"provider": "kie", "outcome": "failed", "cost": cost("0.020000", "reported")},
        {"provider": "ark", "outcome": "rate_limited"},
        {"provider": "kie", "outcome": "succeeded", "cost": cost("0.025000", "reported")},
    ]
    assert total_cost(entries) == cost("0.045000", "reported")
    assert total_cost([{"outcome": "failed"}]) is None
    assert total_cost([]) is None
