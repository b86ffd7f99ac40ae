"""The control API under `/_control`: inject faults, reset, read counters, host input files.

POST   /_control/faults   {"vendor": "ark"|"kie"|"cometapi"|"acedata"|"vtrix"|"*",
                           "op": "create"|"poll"|"callback"|"*",
                           "kind": "...", "count": N, "params": {...}}  → 201
GET    /_control/faults   the queue
DELETE /_control/faults   empty the queue → 204
POST   /_control/reset    forget tasks, faults and counters → 204
GET    /_control/stats    per vendor: requests by op, requests per second, tasks created
POST   /_control/files    raw image bytes (Content-Type image/png|jpeg|webp) → {"url": ...}
GET    /_control/health   {"ok": true}

Where each fault kind acts: latency, hang, rate_limit, server_error and malformed on any
API request (create, poll); task_fail and moderation on create (Ark, CometAPI and
synchronous AceData answer with the error at once; a KIE, Vtrix or asynchronous AceData
task ends failed); callback_lost, callback_duplicate and callback_early on KIE and AceData
tasks with a callback URL (on create, or queued with op `callback`, except early).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from sandbox.faults import WILDCARD, Fault, FaultSpecError
from sandbox.files import EXTENSIONS
from sandbox.state import sandbox_of
from sandbox.vendor import public_base_url

blueprint = Blueprint("control", __name__, url_prefix="/_control")

# Pseudo-vendor that owns uploaded input files: `/_control/files/<id>.<ext>`.
UPLOADS = "_control"


@blueprint.post("/faults")
def add_fault() -> tuple[Response, int]:
    """Queue a fault for the next matching requests."""
    sandbox = sandbox_of(current_app)
    spec = request.get_json(silent=True)
    if not isinstance(spec, dict):
        return _bad_request("body must be a JSON object")
    vendor = spec.get("vendor", WILDCARD)
    if vendor != WILDCARD and vendor not in sandbox.vendor_names:
        return _bad_request(f"unknown vendor {vendor!r}")
    count = spec.get("count", 1)
    params = spec.get("params") or {}
    if not isinstance(count, int) or not isinstance(params, dict):
        return _bad_request("count must be an integer and params an object")
    try:
        sandbox.faults.add(vendor, spec.get("op", WILDCARD), Fault(spec.get("kind"), params), count)
    except FaultSpecError as exc:
        return _bad_request(str(exc))
    return jsonify({"queued": sandbox.faults.pending()}), 201


@blueprint.get("/faults")
def list_faults() -> Response:
    """The faults still waiting."""
    return jsonify({"queued": sandbox_of(current_app).faults.pending()})


@blueprint.delete("/faults")
def clear_faults() -> tuple[str, int]:
    """Drop every queued fault."""
    sandbox_of(current_app).faults.clear()
    return "", 204


@blueprint.post("/reset")
def reset() -> tuple[str, int]:
    """Forget tasks, faults and counters."""
    sandbox_of(current_app).reset()
    return "", 204


@blueprint.get("/stats")
def stats() -> Response:
    """Request counters per vendor."""
    return jsonify(sandbox_of(current_app).stats.snapshot())


@blueprint.get("/tasks/<vendor>")
def task_times(vendor: str) -> Response | tuple[Response, int]:
    """When each task of a task vendor ends, for measuring the delay after it (benchmarks)."""
    table = sandbox_of(current_app).vendor_state.get(vendor)
    if table is None:
        return _bad_request(f"{vendor!r} keeps no task table")
    tasks = [{"task_id": task_id, "finished_at": at} for task_id, at in table.finish_times()]
    return jsonify({"vendor": vendor, "tasks": tasks})


@blueprint.post("/files")
def upload_file() -> tuple[Response, int]:
    """Host an input image, like the vendors' upload APIs, and return its signed link."""
    sandbox = sandbox_of(current_app)
    content_type = request.mimetype
    if content_type not in EXTENSIONS:
        return _bad_request(f"Content-Type must be one of {', '.join(EXTENSIONS)}")
    base_url = public_base_url(sandbox.config, request)
    url = sandbox.files.put(
        UPLOADS, request.get_data(), content_type, sandbox.config.url_ttl, base_url
    )
    return jsonify({"url": url}), 201


@blueprint.get("/health")
def health() -> Response:
    """Liveness, for scripts waiting for the sandbox to come up."""
    return jsonify({"ok": True, "vendors": sandbox_of(current_app).vendor_names})


def _bad_request(message: str) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    return jsonify(body), 400
