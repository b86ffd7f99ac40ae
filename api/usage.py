"""`/v1/usage`: the tenant's jobs, images, outcomes and cost over a window, grouped."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify, request

from api.auth import current_tenant_id
from api.errors import ApiProblem
from api.openapi import operation, query_param
from api.params import parse_time
from api.state import db, services
from editqueue import schemas
from editqueue.spend import report

bp = Blueprint("usage", __name__, url_prefix="/v1/usage")

USAGE_QUERY = [
    query_param(
        "from",
        {"type": "string", "examples": ["2026-12-01", "2026-12-01T00:00:00Z"]},
        "start of the window, inclusive: RFC 3339 time or YYYY-MM-DD (UTC midnight); "
        "default the start of the current UTC month (or of `to`'s month)",
    ),
    query_param(
        "to",
        {"type": "string", "examples": ["2026-12-01", "2026-12-01T00:00:00Z"]},
        "end of the window, exclusive: RFC 3339 time or YYYY-MM-DD; default the start of "
        "the month after `from`'s; at most 366 days after `from`",
    ),
    query_param(
        "group_by",
        {"type": "string", "enum": list(report.GROUPS), "default": report.DEFAULT_GROUP},
        "row key: UTC day, model id or provider",
    ),
]


def _bound(name: str) -> dt.datetime | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_time(value, name)
    except ApiProblem as exc:
        # A usage query is one thing; every bad parameter of it is the same 400.
        raise report.InvalidUsageQuery(exc.detail, errors=exc.errors) from None


def query_window() -> tuple[dt.datetime, dt.datetime, str]:
    """The request's window and grouping, checked (400 invalid_usage_query otherwise)."""
    group_by = report.check_group(request.args.get("group_by") or report.DEFAULT_GROUP)
    start, end = report.resolve_window(_bound("from"), _bound("to"), now=dt.datetime.now(dt.UTC))
    return start, end, group_by


@bp.get("")
@operation(
    "Usage and cost report",
    tags=["usage"],
    responses={200: schemas.Usage, 400: None},
    query=USAGE_QUERY,
)
def get() -> Response:
    """This tenant's jobs, output images, outcomes and cost, per UTC day, model or provider.

    Counts jobs *created* in [`from`, `to`) whatever their state (so a window's report is
    final once its jobs ended): `succeeded`, `failed` (deadline expiries included) and
    `canceled`; the rest are still queued or running. `cost` sums the jobs' `usage.cost` in
    the deployment's currency; `unpriced` counts succeeded jobs without a known price. Rows
    are only for keys that have jobs, ordered by key; `total` sums them.
    """
    start, end, group_by = query_window()
    result = report.usage_report(
        db(),
        current_tenant_id(),
        start=start,
        end=end,
        group_by=group_by,
        currency=services().settings.currency,
    )
    return jsonify(report.report_to_public(result))
