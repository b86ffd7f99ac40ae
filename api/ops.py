"""Operations: liveness, readiness, the OpenAPI document and offline interactive docs."""

from __future__ import annotations

import logging
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from sqlalchemy import text

from api.openapi import build_spec, operation
from api.state import services
from editqueue import logs

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

# Swagger UI 5 (renders OpenAPI 3.1), shipped by the pinned flask-swagger-ui wheel; only its
# static files are used, so the page works offline.
SWAGGER_DIR = Path(flask_swagger_ui.__file__).parent / "dist"
STATIC_DIR = Path(__file__).parent / "static" / "docs"

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>editqueue API</title>
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""

# No inline script: the page runs under this policy as it is.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
)

_OPS_HEALTH = {"application/json": {"schema": {"type": "object"}}}


@bp.get("/healthz")
@operation(
    "Liveness",
    tags=["operations"],
    auth=False,
    responses={200: None},
    raw_responses={200: _OPS_HEALTH},
    response_descriptions={200: 'Alive: `{"status": "ok"}`'},
)
def healthz() -> Response:
    """The process is alive: answers `{"status": "ok"}` without touching any dependency."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@operation(
    "Readiness",
    tags=["operations"],
    auth=False,
    responses={200: None, 503: None},
    raw_responses={200: _OPS_HEALTH, 503: _OPS_HEALTH},
    response_descriptions={
        200: "Ready: the database and the broker answer",
        503: "Not ready: `checks` names what is unreachable",
    },
)
def readyz() -> tuple[Response, int]:
    """200 when the database and the broker answer, else 503 naming what is down.

    The body is `{"status": "ready"|"unavailable", "checks": {"database": "ok"|"unreachable",
    "broker": "ok"|"unreachable"}}`; a load balancer sends traffic only while it is 200.
    """
    svc = services()
    checks = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("api.ready.database_unreachable", extra=logs.fields(error=type(exc).__name__))
        checks["database"] = "unreachable"
    try:
        svc.broker_ping()
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("api.ready.broker_unreachable", extra=logs.fields(error=type(exc).__name__))
        checks["broker"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )


@bp.get("/openapi.json")
@operation(
    "This OpenAPI document",
    tags=["operations"],
    auth=False,
    responses={200: None},
    raw_responses={200: {"application/json": {"schema": {"type": "object"}}}},
    response_descriptions={200: "The OpenAPI 3.1 document"},
)
def openapi() -> Response:
    """The OpenAPI 3.1 document, generated from the routes and schemas (built once per process).

    It lists every operation, the problem types of each error status, the response headers and,
    under `webhooks`, the payload of every event type.
    """
    spec = current_app.extensions.get("editqueue_openapi")
    if spec is None:
        spec = current_app.extensions["editqueue_openapi"] = build_spec(current_app)
    return jsonify(spec)


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI, served from the bundled assets (works offline)."""
    response = Response(DOCS_PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """Swagger UI bootstrap (a file, so a strict CSP needs no inline script)."""
    return send_from_directory(STATIC_DIR, "init.js", max_age=3600)


@bp.get("/docs/static/<path:name>")
def docs_static(name: str) -> Response:
    """Swagger UI's bundled static files."""
    return send_from_directory(SWAGGER_DIR, name, max_age=3600)
