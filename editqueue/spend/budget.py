"""Tenant budgets: reserve a job's estimate on submit, settle its real cost when it ends.

One `tenant_spend` row per tenant and calendar month (UTC) holds `reserved` (estimates of
live jobs) and `spent` (what ended jobs cost). Submission reserves with one conditional
UPSERT that only succeeds while `spent + reserved + estimate <= budget`; the row lock it
takes orders concurrent submissions on every API process, so the month can never go past
the budget through reservations. A job whose price is unknown reserves nothing: it is
admitted and its cost (if its vendor reports one) counts when it ends.

Settling runs in the job's finishing transaction: its reservation is released and its
actual cost (`usage.cost.amount`, 0 when nothing was billed) is added to the month the
job was created in. Spend is counted for every tenant, budget or not, so a budget set in
the middle of a month sees the month as it is; a job with neither an estimate nor a cost
writes nothing.

Crossing `budget × alert ratio` (reserved + spent) fires `tenant.budget_threshold` once
per month: `threshold_fired_at` is claimed by a conditional UPDATE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import Numeric, bindparam, text
from sqlalchemy.orm import Session

from editqueue.config import Settings
from editqueue.errors import EditqueueError
from editqueue.infra import outbox
from editqueue.jobs import routing
from editqueue.models import Job
from editqueue.spend import prices
from editqueue.webhooks.fanout import record_tenant_event

if TYPE_CHECKING:
    from editqueue.jobs.states import NewJob

THRESHOLD_EVENT = "tenant.budget_threshold"
# Alert ratio of a tenant with a budget but no ratio of its own: warn at 80 %.
DEFAULT_ALERT_RATIO = Decimal("0.8")
_MONEY = Numeric(18, 6)
_ZERO = Decimal(0)


def month_of(when: dt.datetime) -> dt.date:
    """The first day (UTC) of the calendar month `when` falls in."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return dt.date(when.year, when.month, 1)


money = prices.money  # callers of the budget (the CLI) print amounts with it


@dataclass(frozen=True)
class Budget:
    """A tenant's monthly budget and the share of it that fires the threshold event."""

    amount: Decimal
    alert_ratio: Decimal = DEFAULT_ALERT_RATIO

    @classmethod
    def of(cls, amount: Decimal | None, ratio: Decimal | None) -> Budget | None:
        """The budget of a tenant's columns; None when it has none."""
        if amount is None:
            return None
        return cls(amount, DEFAULT_ALERT_RATIO if ratio is None else ratio)

    @property
    def threshold(self) -> Decimal:
        """Spend at which the month's alert fires."""
        return self.amount * self.alert_ratio


class BudgetExceeded(EditqueueError):
    """The job's estimate would take the month's spend past the tenant's budget."""

    status = 402
    code = "budget_exceeded"
    title = "Budget exceeded"

    def __init__(
        self,
        *,
        budget: Decimal,
        spent: Decimal,
        reserved: Decimal,
        estimate: Decimal,
        currency: str,
    ) -> None:
        self.budget, self.spent, self.reserved = budget, spent, reserved
        self.estimate, self.currency = estimate, currency
        self.left = max(budget - spent - reserved, _ZERO)
        super().__init__(
            f"this request is estimated at {money(estimate)} {currency}, but only "
            f"{money(self.left)} {currency} of this month's budget of {money(budget)} "
            f"{currency} is left; nothing was created"
        )
        self.extensions = {
            "budget": money(budget),
            "spent": money(spent),
            "reserved": money(reserved),
            "left": money(self.left),
            "estimate": money(estimate),
            "currency": currency,
        }


# -- estimates -------------------------------------------------------------------------------


def job_estimate(settings: Settings, new: NewJob) -> Decimal | None:
    """What a new job reserves: the dearest known price on its route × its outputs."""
    vendors = routing.route(new.model, new.provider_pin, settings, lambda _vendor: True)
    images = int(new.params.get("n") or 1)
    megapixels = prices.requested_megapixels(new.params)
    return prices.max_estimate(settings, new.model, vendors, images, megapixels)


def total_estimate(estimates: Sequence[Decimal | None]) -> Decimal | None:
    """The sum of the known estimates; None when none is known."""
    known = [e for e in estimates if e is not None]
    return sum(known, _ZERO) if known else None


def usage_cost(usage: Mapping[str, Any] | None) -> Decimal:
    """The job's billed cost from `usage.cost.amount` (0 when absent or unreadable)."""
    cost = (usage or {}).get("cost")
    if not isinstance(cost, Mapping) or cost.get("amount") is None:
        return _ZERO
    try:
        amount = Decimal(str(cost["amount"]))
    except InvalidOperation:
        return _ZERO
    return amount if amount.is_finite() and amount > 0 else _ZERO


# -- reserving -------------------------------------------------------------------------------

# The row is created with the reservation when the month has none yet; either way the
# WHERE is evaluated on the latest row version under its lock, so two submissions can
# never both fit into the same remaining amount.
_RESERVE = text(
    "INSERT INTO tenant_spend AS s (tenant_id, month, reserved, spent)"
    " SELECT :tenant_id, :month, :amount, 0 WHERE :amount <= :budget"
    " ON CONFLICT (tenant_id, month) DO UPDATE SET reserved = s.reserved + EXCLUDED.reserved"
    " WHERE s.spent + s.reserved + EXCLUDED.reserved <= :budget"
    " RETURNING s.spent, s.reserved, s.threshold_fired_at"
).bindparams(bindparam("amount", type_=_MONEY), bindparam("budget", type_=_MONEY))

_RELEASE = text(
    "UPDATE tenant_spend SET reserved = GREATEST(reserved - :amount, 0)"
    " WHERE tenant_id = :tenant_id AND month = :month"
).bindparams(bindparam("amount", type_=_MONEY))

_CURRENT = text(
    "SELECT spent, reserved, threshold_fired_at FROM tenant_spend"
    " WHERE tenant_id = :tenant_id AND month = :month"
)

# Released and charged in one statement; the tenant's budget comes back with the row, so
# the threshold check costs no extra round trip.
_SETTLE = text(
    "WITH row AS ("
    " INSERT INTO tenant_spend AS s (tenant_id, month, reserved, spent)"
    " VALUES (:tenant_id, :month, 0, :cost)"
    " ON CONFLICT (tenant_id, month) DO UPDATE"
    " SET reserved = GREATEST(s.reserved - :estimate, 0), spent = s.spent + EXCLUDED.spent"
    " RETURNING s.spent, s.reserved, s.threshold_fired_at)"
    " SELECT row.spent, row.reserved, row.threshold_fired_at,"
    " t.monthly_budget, t.budget_alert_ratio"
    " FROM row JOIN tenants t ON t.id = :tenant_id"
).bindparams(bindparam("cost", type_=_MONEY), bindparam("estimate", type_=_MONEY))

_CLAIM_THRESHOLD = text(
    "UPDATE tenant_spend SET threshold_fired_at = now()"
    " WHERE tenant_id = :tenant_id AND month = :month AND threshold_fired_at IS NULL"
    " RETURNING spent, reserved, threshold_fired_at"
)


@dataclass(frozen=True)
class Spend:
    """One month of a tenant's spend."""

    month: dt.date
    spent: Decimal = _ZERO
    reserved: Decimal = _ZERO
    threshold_fired_at: dt.datetime | None = None

    @property
    def total(self) -> Decimal:
        """Spent plus reserved: what the budget is checked against."""
        return self.spent + self.reserved


def month_spend(session: Session, tenant_id: str, month: dt.date) -> Spend:
    """The tenant's spend in a month (zeros when nothing was counted)."""
    row = session.execute(_CURRENT, {"tenant_id": tenant_id, "month": month}).one_or_none()
    if row is None:
        return Spend(month)
    return Spend(month, row.spent, row.reserved, row.threshold_fired_at)


def reserve(
    session: Session,
    tenant_id: str,
    amount: Decimal,
    *,
    budget: Decimal,
    currency: str = "USD",
    when: dt.datetime | None = None,
) -> Spend:
    """Reserve `amount` in the month of `when` (now) or raise BudgetExceeded (nothing kept).

    Returns the month's spend after the reservation (`budget - total` is what is left).
    """
    month = month_of(when or dt.datetime.now(dt.UTC))
    params = {"tenant_id": tenant_id, "month": month, "amount": amount, "budget": budget}
    row = session.execute(_RESERVE, params).one_or_none()
    if row is None:
        now = month_spend(session, tenant_id, month)
        raise BudgetExceeded(
            budget=budget,
            spent=now.spent,
            reserved=now.reserved,
            estimate=amount,
            currency=currency,
        )
    return Spend(month, row.spent, row.reserved, row.threshold_fired_at)


def release(session: Session, tenant_id: str, amount: Decimal, *, when: dt.datetime) -> None:
    """Give back a reservation made in this transaction for a job that was not created."""
    session.execute(_RELEASE, {"tenant_id": tenant_id, "month": month_of(when), "amount": amount})


def admit(
    session: Session,
    tenant_id: str,
    amount: Decimal | None,
    budget: Budget | None,
    *,
    when: dt.datetime,
    settings: Settings,
) -> list[outbox.Message]:
    """Reserve a submission's estimate against the budget (BudgetExceeded when it does not
    fit) and fire the threshold event if this reservation crossed it; returns messages to publish.

    No budget or no known estimate: nothing is written."""
    if budget is None or amount is None or amount <= 0:
        return []
    spend = reserve(
        session, tenant_id, amount, budget=budget.amount, currency=settings.currency, when=when
    )
    return _maybe_fire(session, tenant_id, spend, budget, settings)


# -- settling --------------------------------------------------------------------------------


def settle(session: Session, job: Job, *, settings: Settings) -> list[outbox.Message]:
    """At a job's end (in its finishing transaction): release its reservation, charge its
    cost to the month it was created in; returns the messages of a threshold event it fired."""
    return settle_all(session, [job], settings=settings)


def settle_all(
    session: Session, ended: Sequence[Job], *, settings: Settings
) -> list[outbox.Message]:
    """`settle` for jobs ended in one transaction, one statement per tenant and month.

    A transaction that ends several jobs (a batch cancel) settles them after it has ended
    them all: the spend row is always locked after the job rows, as a single finisher
    does, so two finishing transactions never wait on each other in a cycle.
    """
    totals: dict[tuple[str, dt.date], tuple[Decimal, Decimal]] = {}
    for job in ended:
        estimate, cost = job.cost_estimate or _ZERO, usage_cost(job.usage)
        if estimate <= 0 and cost <= 0:
            continue
        key = (job.tenant_id, month_of(job.created_at))
        held, charged = totals.get(key, (_ZERO, _ZERO))
        totals[key] = (held + max(estimate, _ZERO), charged + cost)
    ids: list[outbox.Message] = []
    for (tenant_id, month), (estimate, cost) in sorted(totals.items()):
        params = {"tenant_id": tenant_id, "month": month, "cost": cost, "estimate": estimate}
        row = session.execute(_SETTLE, params).one()
        budget = Budget.of(row.monthly_budget, row.budget_alert_ratio)
        if budget is None or cost <= 0:
            continue  # releasing a reservation only lowers the spend
        spend = Spend(month, row.spent, row.reserved, row.threshold_fired_at)
        ids += _maybe_fire(session, tenant_id, spend, budget, settings)
    return ids


# -- the threshold event ---------------------------------------------------------------------


def crossed(spend: Spend, budget: Budget) -> bool:
    """Whether the month's spend reached the alert threshold and the event has not fired."""
    return spend.threshold_fired_at is None and spend.total >= budget.threshold


def threshold_data(tenant_id: str, spend: Spend, budget: Budget, currency: str) -> dict[str, Any]:
    """The payload of `tenant.budget_threshold`."""
    return {
        "object": "budget_threshold",
        "tenant_id": tenant_id,
        "month": spend.month.strftime("%Y-%m"),
        "budget": money(budget.amount),
        "alert_ratio": str(budget.alert_ratio.normalize()),
        "threshold": money(budget.threshold),
        "spent": money(spend.spent),
        "reserved": money(spend.reserved),
        "left": money(max(budget.amount - spend.total, _ZERO)),
        "currency": currency,
    }


def _maybe_fire(
    session: Session, tenant_id: str, spend: Spend, budget: Budget, settings: Settings
) -> list[outbox.Message]:
    if not crossed(spend, budget):
        return []
    claimed = session.execute(
        _CLAIM_THRESHOLD, {"tenant_id": tenant_id, "month": spend.month}
    ).one_or_none()
    if claimed is None:
        return []  # another transaction fired it first
    fired = Spend(spend.month, claimed.spent, claimed.reserved, claimed.threshold_fired_at)
    data = threshold_data(tenant_id, fired, budget, settings.currency)
    _, ids = record_tenant_event(session, tenant_id, THRESHOLD_EVENT, data, settings=settings)
    return ids
