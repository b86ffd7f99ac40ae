"""Vendors and health: what an operator opens first during an incident."""

from __future__ import annotations

from flask import render_template

from api.console import health
from api.console.blueprint import bp
from api.console.guard import viewer
from api.rate_limit import redis_client_url
from api.state import db, services

CHART_HEIGHT = 120


def _bars(minutes: list[dict]) -> list[dict]:
    """SVG geometry of the per-minute chart (attributes, not inline styles: the CSP)."""
    peak = max((m["succeeded"] + m["other"] for m in minutes), default=0) or 1
    bars = []
    for i, m in enumerate(minutes):
        ok = CHART_HEIGHT * m["succeeded"] / peak
        bad = CHART_HEIGHT * m["other"] / peak
        bars.append(
            {
                "x": i * 10,
                "ok_y": CHART_HEIGHT - ok,
                "ok_h": ok,
                "bad_y": CHART_HEIGHT - ok - bad,
                "bad_h": bad,
                "title": f"{m['at']:%H:%M}: {m['succeeded']} ok, {m['other']} not",
            }
        )
    return bars


@bp.get("/vendors")
def vendors_page() -> str:
    """Per vendor: state, slots, success rate and latency over the last hour; the backlog."""
    settings = services().settings
    url = redis_client_url(settings.redis_url) if settings.redis_url else None
    data = health.overview(db(), viewer().tenant_id, settings, redis_client_url=url)
    peak = max((m["succeeded"] + m["other"] for m in data.minutes), default=0)
    return render_template(
        "console/vendors.html",
        data=data,
        bars=_bars(data.minutes),
        chart_height=CHART_HEIGHT,
        peak=peak,
    )
