"""What a vendor attempt cost: the vendor's own figure where it reports one, else the estimate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from editqueue.config import Settings
from editqueue.spend.prices import estimate, money

REPORTED = "reported"
ESTIMATED = "estimated"
MIXED = "mixed"


def attempt_cost(
    settings: Settings,
    vendor: str,
    model_id: str,
    usage: Mapping[str, Any] | None,
    images: int,
    *,
    megapixels: float | None = None,
) -> dict[str, str] | None:
    """{"amount", "currency", "source"} of one attempt; None when the vendor billed nothing.

    `images` is how many outputs the attempt delivered (0 for a failure). A figure the
    vendor reports (Vtrix `usage.cost`, KIE `consumeCredits` × EDITQUEUE_KIE_CREDIT_PRICE)
    wins; otherwise the price table estimates, and an unknown price gives None.
    """
    usage = usage or {}
    reported = _reported(settings, vendor, usage)
    if reported is not None:
        # Zero from the vendor on a failure is its "not billed"; on a success it is a price.
        if reported == 0 and images <= 0:
            return None
        return _cost(reported, settings.currency, REPORTED)
    if vendor == "kie" and _decimal(usage.get("consumeCredits")) == 0:
        return None  # KIE billed no credits (a failed task): known to cost nothing
    if images <= 0:
        # A failure with no output that the vendor reported no charge for is not billed.
        return None
    amount = estimate(settings, vendor, model_id, images, megapixels)
    return None if amount is None else _cost(amount, settings.currency, ESTIMATED)


def add_costs(a: Mapping[str, str] | None, b: Mapping[str, str] | None) -> dict[str, str] | None:
    """The sum of two costs (None counts as nothing); mixed sources give "mixed"."""
    if a is None or b is None:
        other = a if b is None else b
        return None if other is None else dict(other)
    if a["currency"] != b["currency"]:
        raise ValueError(f"cannot add {a['currency']} to {b['currency']}")
    source = a["source"] if a["source"] == b["source"] else MIXED
    return _cost(Decimal(a["amount"]) + Decimal(b["amount"]), a["currency"], source)


def total_cost(entries: Iterable[Mapping[str, Any]]) -> dict[str, str] | None:
    """The job's cost: the sum of its attempt-log entries' `cost`, None when none billed."""
    total: dict[str, str] | None = None
    for entry in entries:
        cost = entry.get("cost")
        if isinstance(cost, Mapping):
            total = add_costs(total, cost)
    return total


def _reported(settings: Settings, vendor: str, usage: Mapping[str, Any]) -> Decimal | None:
    if vendor == "vtrix":
        return _decimal(usage.get("cost"))
    if vendor == "kie":
        credits = _decimal(usage.get("consumeCredits"))
        if credits is None or settings.kie_credit_price is None:
            return None  # credits without a price for them: estimate instead
        return credits * settings.kie_credit_price
    return None


def _decimal(value: Any) -> Decimal | None:
    """A non-negative finite amount from a vendor's number or string; None otherwise."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _cost(amount: Decimal, currency: str, source: str) -> dict[str, str]:
    return {"amount": money(amount), "currency": currency, "source": source}
