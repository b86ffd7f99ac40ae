"""`GET /metrics`: Prometheus text, behind a bearer token when one is configured."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request

from api.errors import ApiProblem
from api.openapi import operation
from api.state import services
from editqueue import metrics

bp = Blueprint("metrics", __name__)

# The classic text format, which every Prometheus-compatible scraper parses; the charset
# is named once (a doubled one makes strict parsers refuse the scrape).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _check_token() -> None:
    token = services().settings.metrics_token
    if token is None or not token.get_secret_value():
        return
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiProblem(
            401,
            "/metrics needs the bearer token of EDITQUEUE_METRICS_TOKEN",
            code="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@bp.get("/metrics")
@operation(
    "Prometheus metrics",
    tags=["operations"],
    auth=False,
    responses={200: None, 401: None},
    raw_responses={200: {CONTENT_TYPE: {"schema": {"type": "string"}}}},
    response_descriptions={200: "Prometheus text exposition format 0.0.4"},
)
def scrape() -> Response:
    """Jobs by state, queue depth and age, vendor calls and latency, webhooks, outbox lag.

    When EDITQUEUE_METRICS_TOKEN is set the scrape must send `Authorization: Bearer <token>`,
    else the answer is a 401; without it the endpoint is open (keep it off public networks).
    """
    _check_token()
    svc = services()
    body = metrics.render(svc.sessions, svc.settings.redis_url)
    # `content_type`, not `mimetype`: Flask would append a second charset to a mimetype.
    return Response(body, content_type=CONTENT_TYPE)
