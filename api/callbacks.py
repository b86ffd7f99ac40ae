"""`POST /v1/callbacks/{provider}/{token}`: vendor callbacks, treated as a hint to look now."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from api.errors import ApiProblem
from api.openapi import operation
from api.state import db, services
from editqueue import jobs, outbox, tasknames
from editqueue.config import PROVIDERS
from editqueue.models import Job
from editqueue.providers.base import CallbackRejected, report_of
from editqueue.providers.registry import get_provider

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__, url_prefix="/v1/callbacks")


@bp.post("/<provider>/<token>")
@operation(
    "Vendor callback (internal)",
    tags=["internal"],
    auth=False,
    raw_body={"content": {"application/json": {"schema": {"type": "object"}}}},
    responses={200: None, 401: None, 404: None},
)
def receive(provider: str, token: str) -> tuple[Response, int]:
    """Authenticate the callback, then wake the job so a worker re-reads the vendor's task."""
    svc = services()
    if provider not in PROVIDERS or len(token) > 64:
        raise ApiProblem(404, "unknown callback")
    session = db()
    job = session.scalar(select(Job).where(Job.callback_token == token))
    if job is None:
        raise ApiProblem(404, "unknown callback")
    try:
        adapter = get_provider(provider, svc.settings)
        notice = adapter.parse_callback(dict(request.headers), request.get_data())
    except CallbackRejected as exc:
        log.warning("callback for %s refused: %s", job.id, exc)
        raise ApiProblem(401, "callback signature refused", code="invalid_signature") from None
    except (KeyError, ValueError):
        raise ApiProblem(400, "unreadable callback body", code="bad_request") from None
    if job.provider_task_id and notice.task_id != job.provider_task_id:
        # Not this job's task (a stale or foreign callback): acknowledge and ignore.
        return jsonify({"received": True, "ignored": "unknown task"}), 200
    lease = jobs.wake(session, job.id, svc.settings.lease_seconds)
    detail = {"provider": provider, "task_id": notice.task_id}
    if notice.status is not None:
        detail["state"] = notice.status.state
    jobs.record_event(session, job, "callback.received", detail)
    ids = []
    if lease:
        # A callback carrying the finished result spares the worker a second vendor call.
        report = report_of(notice.status)
        args = (job.id, lease, report) if report else (job.id, lease)
        ids.append(outbox.add(session, tasknames.ADVANCE_JOB, *args))
    session.flush()
    message_ids = [m.id for m in ids]
    session.commit()
    outbox.publish_committed(session, svc.publisher, message_ids)
    return jsonify({"received": True}), 200
