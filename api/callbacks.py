"""`POST /v1/callbacks/{provider}/{token}`: vendor callbacks, treated as a hint to look now.

The view authenticates and parses; `editqueue.callbacks` decides. A callback never
carries a job's result: a matching one only wakes the job, whose worker then asks the
vendor's task query.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from api.errors import ApiProblem
from api.openapi import operation
from api.state import db, services
from editqueue import logs
from editqueue.config import PROVIDERS
from editqueue.jobs import callbacks
from editqueue.providers.base import CallbackRejected
from editqueue.providers.registry import get_provider

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__, url_prefix="/v1/callbacks")
MAX_TOKEN_LENGTH = 64


@bp.post("/<provider>/<token>")
@operation(
    "Vendor callback (internal)",
    tags=["internal"],
    auth=False,
    raw_body={"content": {"application/json": {"schema": {"type": "object"}}}},
    responses={200: None, 400: None, 401: None, 404: None},
)
def receive(provider: str, token: str) -> tuple[Response, int]:
    """Authenticate the callback, then wake the job so a worker re-reads the vendor's task."""
    svc = services()
    if provider not in PROVIDERS or len(token) > MAX_TOKEN_LENGTH:
        raise _unknown()
    session = db()
    job = callbacks.find_job(session, provider, token)
    if job is None:
        raise _unknown()
    try:
        notice = get_provider(provider, svc.settings).parse_callback(
            dict(request.headers), request.get_data()
        )
    except CallbackRejected as exc:
        log.warning("api.callback.refused", extra=logs.fields(job_id=job.id, reason=str(exc)))
        raise ApiProblem(401, "callback signature refused", code="invalid_signature") from None
    except (KeyError, ValueError):
        raise ApiProblem(400, "unreadable callback body", code="bad_request") from None
    outcome = callbacks.wake_for_callback(
        session,
        job,
        notice.task_id,
        lease_seconds=svc.settings.lease_seconds,
        publisher=svc.publisher,
    )
    if outcome is callbacks.Outcome.REFUSED:
        log.warning("api.callback.wrong_task", extra=logs.fields(job_id=job.id))
        raise _unknown()
    return jsonify({"received": True}), 200


def _unknown() -> ApiProblem:
    """The one answer for any callback that is not about the job's current task."""
    return ApiProblem(404, "unknown callback")
