"""Budget checks of the submit routes: the tenant's budget from its key, the reservation
made in the inserting transaction, and the stored inputs dropped when it is refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.orm import Session

from api.auth import current_key
from api.state import services
from editqueue.infra import outbox
from editqueue.jobs.batches import discard_inputs
from editqueue.jobs.states import NewJob
from editqueue.spend import budget


def tenant_budget() -> budget.Budget | None:
    """The budget of the request's tenant, as read with its key (None: no budget)."""
    owner = current_key()
    if owner is None:
        return None
    return budget.Budget.of(owner.monthly_budget, owner.budget_alert_ratio)


def estimate_jobs(new_jobs: Sequence[NewJob]) -> Decimal | None:
    """Set each job's reservation (its estimate) and return their total (None: unknown)."""
    settings = services().settings
    for new in new_jobs:
        new.cost_estimate = budget.job_estimate(settings, new)
    return budget.total_estimate([new.cost_estimate for new in new_jobs])


def admit(
    session: Session,
    tenant_id: str,
    new_jobs: Sequence[NewJob],
    amount: Decimal | None,
    limit: budget.Budget,
    *,
    when: dt.datetime,
) -> list[outbox.Message]:
    """Reserve `amount` for jobs just inserted in this transaction; 402 budget_exceeded
    (nothing kept: the caller's transaction is rolled back) when it does not fit."""
    svc = services()
    try:
        return budget.admit(session, tenant_id, amount, limit, when=when, settings=svc.settings)
    except budget.BudgetExceeded:
        session.rollback()
        discard_inputs(new_jobs, svc.storage)
        raise
