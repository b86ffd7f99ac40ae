"""`GET /metrics`: Prometheus text (restrict access to it at the network level)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.state import services
from editqueue import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Jobs by state, queue depth and age, vendor calls and latency, webhooks, outbox lag."""
    svc = services()
    body = metrics.render(svc.sessions, svc.settings.redis_url)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
