"""The usage report: a tenant's jobs, images, outcomes and cost over a time window, grouped.

One aggregate over `jobs` (tenant, `created_at` window) answers the whole report; a job is
counted in the window it was *created* in, so a month's report never changes once the
month's jobs have ended, and consecutive windows never count a job twice.

Counts: `jobs` is every job created in the window, whatever its state; `succeeded`,
`failed` and `canceled` count the jobs that ended so (a job past its deadline ends
`failed` with code `timeout`, so "expired" is inside `failed`); jobs still queued or
running are `jobs - succeeded - failed - canceled`. `images` counts the outputs stored.
`cost` sums `usage.cost.amount` in the report's currency; `unpriced` counts the succeeded
jobs that carry no cost (their price is unknown), so a reader can tell a total that is
only a lower bound.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, and_, case, cast, func, select
from sqlalchemy.orm import Session

from editqueue.errors import EditqueueError
from editqueue.jobs.status import JobStatus
from editqueue.models import Job
from editqueue.serialize import timestamp
from editqueue.spend.prices import money

GROUPS = ("day", "model", "provider")
DEFAULT_GROUP = "day"
MAX_RANGE = dt.timedelta(days=366)
# Money columns are NUMERIC(18, 6); amounts are shown at that scale.


class InvalidUsageQuery(EditqueueError):
    """A usage report asked for an unknown grouping or an impossible time window."""

    status = 400
    code = "invalid_usage_query"
    title = "Invalid usage query"


@dataclass(frozen=True)
class UsageRow:
    """The counts and cost of one group (a day, a model or a provider)."""

    key: str | None
    jobs: int = 0
    images: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    unpriced: int = 0
    cost: Decimal = Decimal(0)

    def __add__(self, other: UsageRow) -> UsageRow:
        return UsageRow(
            key=self.key,
            jobs=self.jobs + other.jobs,
            images=self.images + other.images,
            succeeded=self.succeeded + other.succeeded,
            failed=self.failed + other.failed,
            canceled=self.canceled + other.canceled,
            unpriced=self.unpriced + other.unpriced,
            cost=self.cost + other.cost,
        )


@dataclass(frozen=True)
class UsageReport:
    """The rows of a report (ordered by key) and their total."""

    start: dt.datetime
    end: dt.datetime
    group_by: str
    currency: str
    rows: list[UsageRow]
    total: UsageRow


def month_start(when: dt.datetime) -> dt.datetime:
    """Midnight UTC on the first day of `when`'s month."""
    utc = when.astimezone(dt.UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: dt.datetime) -> dt.datetime:
    """The first instant of the month after the one `start` (a month start) begins."""
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def resolve_window(
    start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) window asked for: a missing bound is filled with the other's month.

    Neither given: the current UTC month. Only `start`: up to the start of the next month
    after `start`'s. Only `end`: from the start of the month holding the instant before
    `end`. Refused (InvalidUsageQuery): start ≥ end, or a window longer than 366 days.
    """
    if start is None and end is None:
        start = month_start(now)
    if start is None:
        assert end is not None
        try:
            start = month_start(end - dt.timedelta(microseconds=1))
        except OverflowError:  # to = the first instant of year 1: nothing comes before it
            start = end
    if end is None:
        try:
            end = next_month(month_start(start))
        except ValueError:  # December of year 9999
            end = dt.datetime.max.replace(tzinfo=dt.UTC)
    if start >= end:
        raise InvalidUsageQuery(
            "from must be before to",
            errors=[{"field": "to", "message": "must be later than from"}],
        )
    if end - start > MAX_RANGE:
        raise InvalidUsageQuery(
            f"the window may span at most {MAX_RANGE.days} days",
            errors=[{"field": "to", "message": f"at most {MAX_RANGE.days} days after from"}],
        )
    return start, end


def check_group(group_by: str) -> str:
    """`group_by` if it is one of GROUPS, else InvalidUsageQuery."""
    if group_by not in GROUPS:
        raise InvalidUsageQuery(
            f"group_by must be one of {', '.join(GROUPS)}",
            errors=[{"field": "group_by", "message": f"one of {', '.join(GROUPS)}"}],
        )
    return group_by


def _key_column(group_by: str) -> Any:
    if group_by == "day":
        # Days are UTC days, whatever the database session's time zone.
        return func.to_char(func.timezone("UTC", Job.created_at), "YYYY-MM-DD")
    return Job.model if group_by == "model" else Job.provider


def usage_report(
    session: Session,
    tenant_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    group_by: str = DEFAULT_GROUP,
    currency: str = "USD",
) -> UsageReport:
    """The tenant's usage for jobs created in [start, end), one row per `group_by` key."""
    key = _key_column(check_group(group_by)).label("key")
    cost = Job.usage["cost"]
    amount = cast(cost["amount"].astext, Numeric)
    priced = and_(cost["amount"].astext.is_not(None), cost["currency"].astext == currency)
    images = case(
        (func.jsonb_typeof(Job.outputs) == "array", func.jsonb_array_length(Job.outputs)),
        else_=0,
    )
    query = (
        select(
            key,
            func.count().label("jobs"),
            func.coalesce(func.sum(images), 0).label("images"),
            func.count().filter(Job.status == JobStatus.SUCCEEDED).label("succeeded"),
            func.count().filter(Job.status == JobStatus.FAILED).label("failed"),
            func.count().filter(Job.status == JobStatus.CANCELED).label("canceled"),
            func.count()
            .filter(Job.status == JobStatus.SUCCEEDED, cost["amount"].astext.is_(None))
            .label("unpriced"),
            func.coalesce(func.sum(amount).filter(priced), 0).label("cost"),
        )
        .where(Job.tenant_id == tenant_id, Job.created_at >= start, Job.created_at < end)
        .group_by(key)
        .order_by(key.asc().nulls_last())
    )
    rows = [
        UsageRow(
            key=r.key,
            jobs=r.jobs,
            images=int(r.images),
            succeeded=r.succeeded,
            failed=r.failed,
            canceled=r.canceled,
            unpriced=r.unpriced,
            cost=Decimal(r.cost),
        )
        for r in session.execute(query)
    ]
    total = sum(rows, UsageRow(key=None))
    return UsageReport(start, end, group_by, currency, rows, total)


def _row_to_public(row: UsageRow, currency: str, *, with_key: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"key": row.key} if with_key else {}
    out.update(
        jobs=row.jobs,
        images=row.images,
        succeeded=row.succeeded,
        failed=row.failed,
        canceled=row.canceled,
        unpriced=row.unpriced,
        cost={"amount": money(row.cost), "currency": currency},
    )
    return out


def report_to_public(report: UsageReport) -> dict[str, Any]:
    """The report as the public Usage object."""
    return {
        "object": "usage",
        "from": timestamp(report.start),
        "to": timestamp(report.end),
        "group_by": report.group_by,
        "currency": report.currency,
        "data": [_row_to_public(r, report.currency, with_key=True) for r in report.rows],
        "total": _row_to_public(report.total, report.currency, with_key=False),
    }
