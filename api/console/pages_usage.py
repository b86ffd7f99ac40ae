"""Usage: this month's jobs and cost per day, as inline SVG bar charts and a table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import render_template, request

from api.console.blueprint import bp
from api.console.guard import viewer
from api.state import db, services
from editqueue.spend import report

CHART_HEIGHT = 120
BAR_STEP = 20  # viewBox units per day; 31 days fit a 620-wide chart


def _month(value: str | None, now: dt.datetime) -> dt.datetime:
    """The first instant of the `YYYY-MM` month asked for, else of the current UTC month."""
    if value:
        try:
            month = dt.datetime.strptime(value, "%Y-%m").replace(tzinfo=dt.UTC)
        except ValueError:
            month = None  # a hand-edited query string: show this month rather than an error
        # Years 1 and 9999 have no previous or next month to link to.
        if month is not None and 1 < month.year < 9999:
            return month
    return report.month_start(now)


def _days(start: dt.datetime, end: dt.datetime) -> list[str]:
    count = (end - start).days
    return [(start + dt.timedelta(days=i)).strftime("%Y-%m-%d") for i in range(count)]


def _bars(days: list[str], rows: dict[str, report.UsageRow]) -> dict[str, list[dict[str, Any]]]:
    """SVG geometry of both charts (attributes, not inline styles: the CSP)."""
    empty = report.UsageRow(key=None)
    peak_cost = max((r.cost for r in rows.values()), default=Decimal(0)) or Decimal(1)
    peak_jobs = max((r.jobs for r in rows.values()), default=0) or 1
    cost, jobs = [], []
    for i, day in enumerate(days):
        row = rows.get(day, empty)
        x = i * BAR_STEP
        h = float(CHART_HEIGHT * row.cost / peak_cost)
        cost.append(
            {"x": x, "y": CHART_HEIGHT - h, "h": h, "day": day, "title": f"{day}: {row.cost:f}"}
        )
        ok = CHART_HEIGHT * row.succeeded / peak_jobs
        bad = CHART_HEIGHT * (row.jobs - row.succeeded) / peak_jobs
        jobs.append(
            {
                "x": x,
                "ok_y": CHART_HEIGHT - ok,
                "ok_h": ok,
                "bad_y": CHART_HEIGHT - ok - bad,
                "bad_h": bad,
                "day": day,
                "title": f"{day}: {row.jobs} jobs, {row.succeeded} succeeded, "
                f"{row.failed} failed, {row.canceled} canceled",
            }
        )
    return {"cost": cost, "jobs": jobs}


@bp.get("/usage")
def usage_page() -> str:
    """One month of the tenant's usage: daily cost and job counts, totals, per-day rows."""
    start = _month(request.args.get("month"), dt.datetime.now(dt.UTC))
    end = report.next_month(start)
    currency = services().settings.currency
    tenant_id = viewer().tenant_id
    daily = report.usage_report(
        db(), tenant_id, start=start, end=end, group_by="day", currency=currency
    )
    by_provider = report.usage_report(
        db(), tenant_id, start=start, end=end, group_by="provider", currency=currency
    )
    days = _days(start, end)
    rows = {r.key: r for r in daily.rows if r.key is not None}
    previous = report.month_start(start - dt.timedelta(days=1))
    return render_template(
        "console/usage.html",
        month=f"{start:%Y-%m}",
        month_label=f"{start:%B %Y}",
        previous=f"{previous:%Y-%m}",
        following=f"{end:%Y-%m}",
        report=daily,
        by_provider=by_provider,
        bars=_bars(days, rows),
        width=len(days) * BAR_STEP,
        chart_height=CHART_HEIGHT,
        peak_cost=max((r.cost for r in daily.rows), default=Decimal(0)),
        peak_jobs=max((r.jobs for r in daily.rows), default=0),
        amount=lambda value: f"{value.quantize(Decimal('0.000001')):f}",
    )
