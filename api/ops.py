"""Operations: liveness, readiness, the OpenAPI document and offline interactive docs."""

from __future__ import annotations

import logging
from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from sqlalchemy import text

from api.openapi import build_spec
from api.state import services

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>editqueue API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""

DOCS_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#ui', deepLinking: true});"


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database and the broker answer, else 503 naming what is down."""
    svc = services()
    checks = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    try:
        svc.broker_ping()  # type: ignore[operator]
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("readiness: broker: %s", type(exc).__name__)
        checks["broker"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document, generated from the routes and schemas."""
    spec = current_app.extensions.get("editqueue_openapi")
    if spec is None:
        spec = current_app.extensions["editqueue_openapi"] = build_spec(current_app)
    return jsonify(spec)


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI, served from the bundled assets (works offline)."""
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """Swagger UI bootstrap (a file, so a strict CSP needs no inline script)."""
    return Response(DOCS_INIT, mimetype="application/javascript")


@bp.get("/docs/static/<path:name>")
def docs_static(name: str) -> Response:
    """Swagger UI's bundled static files."""
    return send_from_directory(SWAGGER_DIR, name, max_age=3600)
