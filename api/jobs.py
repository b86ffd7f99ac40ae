"""`/v1/jobs`: create, get, list, cancel, events."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from api import schemas_http, streaming
from api.auth import current_tenant_id
from api.bodies import idempotency_key, json_field, json_object
from api.errors import ApiProblem, validation_errors
from api.offload import run_blocking, run_sized
from api.openapi import header_param, operation
from api.params import page_limit, parse_time
from api.state import db, db_autocommit, services
from editqueue.catalog import resolve_model
from editqueue.infra import outbox
from editqueue.jobs import idempotency
from editqueue.jobs import states as jobs
from editqueue.jobs.intake import InlineImages, Upload, build_job
from editqueue.jobs.lifecycle import cancel_job
from editqueue.models import JOB_STATUSES, TERMINAL_STATUSES
from editqueue.schemas import (
    Job,
    JobCreate,
    JobEventList,
    JobList,
)
from editqueue.serialize import event_to_public, job_to_public

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

IDEMPOTENCY_HEADER = header_param(
    "Idempotency-Key",
    {"type": "string", "maxLength": 255},
    "Same key and body → the original job (200, Idempotent-Replayed: true).",
)
PREFER_HEADER = header_param(
    "Prefer",
    {"type": "string", "example": "wait=10"},
    "wait=N (1–60): hold the request up to N seconds; 200 if the job ended by then, else "
    "202. Answered with Preference-Applied.",
)


def job_json(job: Any) -> dict[str, Any]:
    """A job row as the public Job object."""
    svc = services()
    return job_to_public(job, svc.storage, link_ttl=svc.settings.output_link_ttl)


# -- create -------------------------------------------------------------------------------


# Multipart fields arrive as text; these are decoded as JSON values before validation.
_JSON_FIELDS = {
    "n",
    "seed",
    "guidance_scale",
    "watermark",
    "provider_options",
    "metadata",
    "deadline_seconds",
}


def _multipart_body() -> tuple[dict[str, Any], list[Upload]]:
    body: dict[str, Any] = {}
    for name in request.form:
        values = request.form.getlist(name)
        if name in ("images", "webhook_events"):
            body[name] = values
            continue
        value = values[-1]
        if name in _JSON_FIELDS:
            try:
                body[name] = json_field(value, name)
            except ValueError:
                body[name] = value  # let validation report the type
        else:
            body[name] = value
    uploads = []
    for name in request.files:
        for index, storage in enumerate(request.files.getlist(name)):
            if name != "image":
                raise ApiProblem(
                    422,
                    f"unexpected file part {name!r}; send images as 'image' parts",
                    errors=[{"field": name, "message": "unknown file part"}],
                )
            uploads.append(Upload(field=f"image[{index}]", data=storage.read()))
    return body, uploads


def _older_hash(body: dict[str, Any], uploads: list[Upload], raw: bytes | None) -> str:
    """The fingerprint this request had before canonical hashing (rows stored then replay).

    JSON: sha256 of the bytes as sent (``raw``); multipart: of the sorted body and the
    uploads' digests.
    """
    if raw is not None:
        return idempotency.raw_hash(raw)
    digest = hashlib.sha256()
    for upload in uploads:
        digest.update(hashlib.sha256(upload.data).digest())
    return idempotency.raw_hash(json.dumps(body, sort_keys=True).encode() + digest.digest())


@bp.post("")
@operation(
    "Create an edit job",
    tags=["jobs"],
    body=JobCreate,
    body_content_types=("application/json", "multipart/form-data"),
    headers=[IDEMPOTENCY_HEADER, PREFER_HEADER],
    responses={200: Job, 202: Job, 400: None, 413: None, 415: None, 422: None},
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Validate, store client bytes, insert the job, ring the dispatcher after commit."""
    tenant_id = current_tenant_id()
    svc = services()
    wait = streaming.parse_prefer_wait(request.headers.get("Prefer"))
    mimetype = request.mimetype
    raw: bytes | None = None
    if mimetype == "application/json":
        body, raw = json_object()
        uploads: list[Upload] = []
    elif mimetype == "multipart/form-data":
        body, uploads = _multipart_body()
    else:
        raise ApiProblem(
            415, "send application/json or multipart/form-data", code="unsupported_media_type"
        )
    key = idempotency_key()
    # Serializing and hashing megabytes of data URLs takes a while: off the event loop.
    size = request.content_length or 0
    request_hash = run_sized(size, idempotency.request_hash, body, *(u.data for u in uploads))
    # insert_job writes the job and its first event in one statement.
    session = db_autocommit()
    if key:
        existing = jobs.find_by_idempotency_key(session, tenant_id, key)
        if existing is not None:
            jobs.check_replay(existing, request_hash, _older_hash(body, uploads, raw))
            return _replayed(existing)
    try:
        spec = JobCreate.model_validate(body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ApiProblem(422, detail, errors=errors) from None
    new = build_job(
        spec,
        tenant_id=tenant_id,
        uploads=uploads,
        settings=svc.settings,
        storage=svc.storage,
        inline=InlineImages(run_blocking),
    )
    created = jobs.insert_job(
        session, tenant_id, new, idempotency_key=key, request_hash=request_hash
    )
    session.commit()
    if created.replayed:
        return _replayed(created.job)
    svc.ring_dispatcher()
    headers = {"Location": f"/v1/jobs/{created.job.id}"}
    if wait is None:
        return jsonify(job_json(created.job)), 202, headers
    session.close()  # hand the connection back while we wait
    job = streaming.wait_for_job(svc.sessions, created.job.id, wait)
    headers["Preference-Applied"] = f"wait={wait}"
    status = 200 if job.status in TERMINAL_STATUSES else 202
    return jsonify(job_json(job)), status, headers


def _replayed(job: Any) -> tuple[Response, int, dict[str, str]]:
    headers = {"Idempotent-Replayed": "true", "Location": f"/v1/jobs/{job.id}"}
    return jsonify(job_json(job)), 200, headers


# -- read ---------------------------------------------------------------------------------


@bp.get("/<job_id>")
@operation("Get a job", tags=["jobs"], responses={200: Job, 404: None})
def get(job_id: str) -> Response:
    """One job, with fresh signed output links."""
    job = jobs.get_job(db(), current_tenant_id(), job_id)
    return jsonify(job_json(job))


_JOB_ID = re.compile(r"job_[0-9A-HJKMNP-TV-Z]{26}")


def _query_time(name: str) -> dt.datetime | None:
    value = request.args.get(name)
    return None if value is None else parse_time(value, name)


def encode_cursor(job_id: str) -> str:
    """An opaque cursor for the page after this job."""
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The job id inside a cursor; 422 for anything we did not issue."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        job_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        job_id = ""
    if len(cursor) > 80 or not _JOB_ID.fullmatch(job_id):
        raise ApiProblem(
            422, "invalid cursor", errors=[{"field": "cursor", "message": "not a valid cursor"}]
        )
    return job_id


def _filters() -> jobs.JobFilter:
    statuses: list[str] = []
    for value in request.args.getlist("status"):
        statuses.extend(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in statuses if s not in JOB_STATUSES]
    if unknown:
        raise ApiProblem(
            422,
            f"unknown status {unknown[0]!r}",
            errors=[{"field": "status", "message": f"one of {', '.join(JOB_STATUSES)}"}],
        )
    model = request.args.get("model")
    if model is not None:
        resolved = resolve_model(model)
        model = resolved.id if resolved else model
    metadata = {}
    for name, value in request.args.items(multi=True):
        if name.startswith("metadata[") and name.endswith("]"):
            metadata[name[len("metadata[") : -1]] = value
    return jobs.JobFilter(
        statuses=statuses,
        model=model,
        provider=request.args.get("provider"),
        batch_id=request.args.get("batch_id"),
        created_after=_query_time("created_after"),
        created_before=_query_time("created_before"),
        metadata=metadata,
    )


@bp.get("")
@operation(
    "List jobs, newest first",
    tags=["jobs"],
    responses={200: JobList, 422: None},
    query=schemas_http.LIST_JOBS_QUERY,
)
def list_() -> Response:
    """Cursor-paged history with filters."""
    limit = page_limit()
    cursor = request.args.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    rows, more = jobs.list_jobs(
        db(), current_tenant_id(), _filters(), limit=limit, before_id=before
    )
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return jsonify({"data": [job_json(j) for j in rows], "next_cursor": next_cursor})


@bp.post("/<job_id>/cancel")
@operation("Cancel a job", tags=["jobs"], responses={200: Job, 404: None, 409: None})
def cancel(job_id: str) -> Response:
    """Cancel a live job; late vendor results are discarded."""
    svc = services()
    session = db()
    finished = cancel_job(
        session, current_tenant_id(), job_id, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, finished.outbox_ids)
    return jsonify(job_json(finished.job))


SSE_CONTENT = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "description": "With Accept: text/event-stream: every event so far (after "
        "Last-Event-ID), then one event per new one; the stream closes after the terminal "
        "event. Each message has `id` (the event id), `event` (its type) and `data` (the "
        "JobEvent as JSON).",
    }
}
LAST_EVENT_ID_HEADER = header_param(
    "Last-Event-ID",
    {"type": "string"},
    "Streams only: resume after this event id (sent automatically by EventSource).",
)


@bp.get("/<job_id>/events")
@operation(
    "A job's events (audit trail), as JSON or a server-sent event stream",
    tags=["jobs"],
    headers=[LAST_EVENT_ID_HEADER],
    responses={200: JobEventList, 404: None, 422: None},
    extra_content={200: SSE_CONTENT},
)
def events(job_id: str) -> Response:
    """Every state change, attempt, poll outcome and delivery, in order."""
    session = db()
    job = jobs.get_job(session, current_tenant_id(), job_id)
    wanted = request.accept_mimetypes.best_match(["application/json", "text/event-stream"])
    if wanted == "text/event-stream":
        after_id = streaming.parse_last_event_id(request.headers.get("Last-Event-ID"))
        session.close()  # the stream opens its own short sessions per poll
        return streaming.event_stream_response(services().sessions, job.id, after_id)
    return jsonify({"data": [event_to_public(e) for e in jobs.list_events(session, job)]})
