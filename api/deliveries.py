"""Delivery logs and replays of webhook events (per job and per endpoint)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api.auth import current_tenant_id
from api.errors import ApiProblem
from api.openapi import operation, query_param
from api.params import page_limit, parse_time
from api.state import db, services
from api.webhook_endpoints import (
    CURSOR_QUERY,
    LIMIT_QUERY,
    json_body,
    load_endpoint,
)
from editqueue.infra import outbox
from editqueue.jobs import states as jobs
from editqueue.models import DELIVERY_STATES
from editqueue.schemas import DeliveryLog, RecoverRequest, Recovery
from editqueue.serialize import timestamp
from editqueue.webhooks import log as webhook_log
from editqueue.webhooks import replay as webhook_replay

bp = Blueprint("deliveries", __name__)

STATE_QUERY = query_param("state", {"type": "string"}, "comma list of pending, succeeded, failed")


def _states() -> list[str]:
    states = [s.strip() for v in request.args.getlist("state") for s in v.split(",") if s.strip()]
    unknown = [s for s in states if s not in DELIVERY_STATES]
    if unknown:
        raise ApiProblem(
            422,
            f"unknown state {unknown[0]!r}",
            errors=[{"field": "state", "message": f"one of {', '.join(DELIVERY_STATES)}"}],
        )
    return states


@bp.get("/v1/jobs/<job_id>/deliveries")
@operation("A job's webhook deliveries", tags=["webhooks"], responses={200: DeliveryLog, 404: None})
def job_deliveries(job_id: str) -> Response:
    """Every delivery of the job's events, oldest first, each with its attempts."""
    session = db()
    job = jobs.get_job(session, current_tenant_id(), job_id)
    return jsonify({"data": webhook_log.job_log(session, job.id), "next_cursor": None})


@bp.post("/v1/jobs/<job_id>/deliveries/retry")
@operation(
    "Re-send the job's latest webhook event now",
    tags=["webhooks"],
    responses={202: DeliveryLog, 404: None, 409: None},
)
def retry_job_deliveries(job_id: str) -> tuple[Response, int]:
    """Same `webhook-id`, same body, to every current target of the job's latest event."""
    svc = services()
    session = db()
    job = jobs.get_job(session, current_tenant_id(), job_id)
    deliveries, ids = webhook_replay.resend_latest_job_event(
        session, job, storage=svc.storage, settings=svc.settings
    )
    data = webhook_log.with_attempts(session, deliveries)
    session.commit()
    outbox.publish_committed(session, svc.publisher, ids)
    return jsonify({"data": data, "next_cursor": None}), 202


@bp.get("/v1/webhook-endpoints/<endpoint_id>/deliveries")
@operation(
    "A webhook endpoint's deliveries, newest first",
    tags=["webhooks"],
    responses={200: DeliveryLog, 404: None, 422: None},
    query=[STATE_QUERY, LIMIT_QUERY, CURSOR_QUERY],
)
def endpoint_deliveries(endpoint_id: str) -> Response:
    """Cursor-paged like `GET /v1/jobs`, filterable by state."""
    endpoint = load_endpoint(endpoint_id)
    states, limit = _states(), page_limit()
    cursor = request.args.get("cursor")
    before = webhook_log.decode_cursor(cursor) if cursor else None
    data, next_cursor = webhook_log.endpoint_log(
        db(), endpoint.id, states=states, limit=limit, before_id=before
    )
    return jsonify({"data": data, "next_cursor": next_cursor})


@bp.post("/v1/webhook-endpoints/<endpoint_id>/recover")
@operation(
    "Re-send an endpoint's failed deliveries since a time",
    tags=["webhooks"],
    body=RecoverRequest,
    responses={202: Recovery, 400: None, 404: None, 409: None, 422: None},
)
def recover(endpoint_id: str) -> tuple[Response, int]:
    """Queued as background work; each re-sent delivery keeps its `webhook-id`."""
    svc = services()
    endpoint = load_endpoint(endpoint_id)
    spec = json_body(RecoverRequest)
    since = parse_time(spec.since, "since")
    until = parse_time(spec.until, "until") if spec.until else None
    if until is not None and until <= since:
        raise ApiProblem(
            422, "until must be after since", errors=[{"field": "until", "message": "after since"}]
        )
    session = db()
    ids = webhook_replay.request_recovery(session, endpoint, since, until)
    session.commit()
    outbox.publish_committed(session, svc.publisher, ids)
    body = {
        "object": "recovery",
        "endpoint_id": endpoint.id,
        "since": timestamp(since),
        "until": timestamp(until),
        "status": "queued",
    }
    return jsonify(body), 202
