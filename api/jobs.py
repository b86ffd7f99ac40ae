"""`/v1/jobs`: create, get, list, cancel, events."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api import budgets, schemas_http, streaming
from api.auth import current_tenant_id
from api.bodies import idempotency_key, json_field, json_object
from api.errors import ApiProblem
from api.offload import run_blocking, run_sized
from api.openapi import header_param, operation
from api.params import page_limit, parse_time
from api.state import close_db, db, db_autocommit, services
from editqueue import schemas
from editqueue.catalog import resolve_model
from editqueue.infra import outbox
from editqueue.jobs import idempotency
from editqueue.jobs import states as jobs
from editqueue.jobs.intake import InlineImages, Upload, build_job
from editqueue.jobs.lifecycle import cancel_job
from editqueue.jobs.status import TERMINAL, JobStatus
from editqueue.models import Job
from editqueue.schemas import (
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


def job_json(job: Job) -> dict[str, Any]:
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


def _metadata_key(name: str) -> str | None:
    """KEY of a `metadata[KEY]` form field, else None."""
    if name.startswith("metadata[") and name.endswith("]"):
        return name[len("metadata[") : -1]
    return None


def _multipart_body() -> tuple[dict[str, Any], list[Upload]]:
    body: dict[str, Any] = {}
    # `metadata[run]=7` is the form spelling of {"metadata": {"run": "7"}}.
    bracketed: dict[str, str] = {}
    for name in request.form:
        values = request.form.getlist(name)
        if name in ("images", "webhook_events"):
            body[name] = values
            continue
        value = values[-1]
        key = _metadata_key(name)
        if key is not None:
            bracketed[key] = value
        elif name in _JSON_FIELDS:
            try:
                body[name] = json_field(value, name)
            except ValueError:
                body[name] = value  # let validation report the type
        else:
            body[name] = value
    if bracketed:
        # Merged over a JSON `metadata` field when both are sent; a non-object one stays
        # as it is, for validation to report.
        merged = body.get("metadata", {})
        if isinstance(merged, dict):
            body["metadata"] = {**merged, **bracketed}
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
    response_headers={
        200: ("Location", "Idempotent-Replayed", "Preference-Applied"),
        202: ("Location", "Preference-Applied"),
    },
    response_descriptions={
        200: "The job ended within `Prefer: wait`, or this replays an Idempotency-Key",
        202: "Queued (or still running when `Prefer: wait` ran out)",
    },
    responses={
        200: schemas.Job,
        202: schemas.Job,
        400: None,
        402: None,
        413: None,
        415: None,
        422: None,
    },
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Validate the body, store the input images and queue the job for a vendor.

    JSON or multipart/form-data (images as `image` file parts). The answer is the Job, 202
    with `Location`; it then runs in the background (follow it with GET, its events, or a
    webhook). `Prefer: wait=N` (1–60) holds the answer until the job ends or N seconds pass:
    200 with the final Job, else 202. With an `Idempotency-Key`, the same key and body
    answer the original job (200, `Idempotent-Replayed: true`); the same key with another
    body is a 422 `idempotency_key_reused`. Limits per model come from `GET /v1/models`.
    When the tenant has a monthly budget and the job's estimate (the dearest known price on
    its route × its outputs) would take the month past it: 402 `budget_exceeded` with the
    amount `left`, and no job is created.
    """
    tenant_id = current_tenant_id()
    svc = services()
    wait = streaming.parse_prefer_wait(request.headers.get("Prefer"))
    body, uploads, raw = _create_body()
    key = idempotency_key()
    # Serializing and hashing megabytes of data URLs takes a while: off the event loop.
    size = request.content_length or 0
    request_hash = run_sized(size, idempotency.request_hash, body, *(u.data for u in uploads))
    # insert_job writes the job and its first event in one statement, so without a budget
    # it runs on an autocommit connection; a tenant with a budget also reserves the job's
    # estimate, in the same transaction of the request's session.
    limit = budgets.tenant_budget()
    session = None if limit is None else db()
    on = db_autocommit() if session is None else session
    earlier = _earlier_job(
        on, tenant_id, key, request_hash, lambda: _older_hash(body, uploads, raw)
    )
    if earlier is not None:
        return _replayed(earlier)
    # A pydantic ValidationError becomes the 422 of api/errors.py.
    spec = JobCreate.model_validate(body)
    new = build_job(
        spec,
        tenant_id=tenant_id,
        uploads=uploads,
        settings=svc.settings,
        storage=svc.storage,
        inline=InlineImages(run_blocking),
    )
    amount = budgets.estimate_jobs([new]) if limit is not None else None
    created = jobs.insert_job(on, tenant_id, new, idempotency_key=key, request_hash=request_hash)
    if session is not None:
        messages: list[outbox.Message] = []
        if limit is not None and not created.replayed:  # a replay reserved at its creation
            messages = budgets.admit(
                session, tenant_id, [new], amount, limit, when=created.job.created_at
            )
        session.commit()
        outbox.publish_committed(session, svc.publisher, messages)
    if created.replayed:
        return _replayed(created.job)
    svc.ring_dispatcher()
    if wait is None:
        return jsonify(job_json(created.job)), 202, _location(created.job)
    close_db()  # hand the connection back while we wait
    return _waited(created.job, wait)


def _create_body() -> tuple[dict[str, Any], list[Upload], bytes | None]:
    """The create body, its uploaded files, and (JSON only) the raw bytes as sent."""
    if request.mimetype == "application/json":
        body, raw = json_object()
        return body, [], raw
    if request.mimetype == "multipart/form-data":
        body, uploads = _multipart_body()
        return body, uploads, None
    raise ApiProblem(
        415, "send application/json or multipart/form-data", code="unsupported_media_type"
    )


def _earlier_job(
    on: Session | Connection,
    tenant_id: str,
    key: str | None,
    request_hash: str,
    older_hash: Callable[[], str],
) -> Job | None:
    """The job an earlier request with this Idempotency-Key created, if any.

    The same body replays that job; another body is refused (422
    idempotency_key_reused). `older_hash` is only computed when there is an earlier job.
    """
    if not key:
        return None
    earlier = jobs.find_by_idempotency_key(on, tenant_id, key)
    if earlier is None:
        return None
    return jobs.check_replay(earlier, request_hash, older_hash())


def _location(job: Job) -> dict[str, str]:
    return {"Location": f"/v1/jobs/{job.id}"}


def _waited(job: Job, wait: int) -> tuple[Response, int, dict[str, str]]:
    """`Prefer: wait=N`: the job once it ended (200) or N seconds passed (202)."""
    ended = streaming.wait_for_job(services().sessions, job.id, wait)
    headers = {**_location(job), "Preference-Applied": f"wait={wait}"}
    status = 200 if ended.status in TERMINAL else 202
    return jsonify(job_json(ended)), status, headers


def _replayed(job: Job) -> tuple[Response, int, dict[str, str]]:
    headers = {"Idempotent-Replayed": "true", **_location(job)}
    return jsonify(job_json(job)), 200, headers


# -- read ---------------------------------------------------------------------------------


@bp.get("/<job_id>")
@operation("Get a job", tags=["jobs"], responses={200: schemas.Job, 404: None})
def get(job_id: str) -> Response:
    """One job of this tenant, with freshly signed output links.

    Output `url`s expire at their `expires_at` (EDITQUEUE_OUTPUT_LINK_TTL); each GET signs new
    ones. Another tenant's job id answers 404, as an unknown one does.
    """
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
    unknown = [s for s in statuses if s not in tuple(JobStatus)]
    if unknown:
        raise ApiProblem(
            422,
            f"unknown status {unknown[0]!r}",
            errors=[{"field": "status", "message": f"one of {', '.join(JobStatus)}"}],
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
    """This tenant's jobs, newest first, cursor-paged and filtered.

    Filters combine with AND: `status` (comma list), `model`, `provider`, `batch_id`, a
    creation-time window and `metadata[KEY]=VALUE` pairs. Pass `next_cursor` as `cursor`
    for the next page; pages are stable while new jobs arrive.
    """
    limit = page_limit()
    cursor = request.args.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    rows, more = jobs.list_jobs(
        db(), current_tenant_id(), _filters(), limit=limit, before_id=before
    )
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return jsonify({"data": [job_json(j) for j in rows], "next_cursor": next_cursor})


@bp.post("/<job_id>/cancel")
@operation("Cancel a job", tags=["jobs"], responses={200: schemas.Job, 404: None, 409: None})
def cancel(job_id: str) -> Response:
    """Cancel a queued or running job: it ends `canceled` and its webhooks fire.

    A late result from the vendor is discarded. A job that already ended answers 409
    `job_finished`.
    """
    svc = services()
    session = db()
    finished = cancel_job(
        session, current_tenant_id(), job_id, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, finished.messages)
    return jsonify(job_json(finished.job))


SSE_CONTENT = {"text/event-stream": {"schema": {"type": "string"}}}
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
    """The job's audit trail: every state change, attempt, poll outcome and delivery, in order.

    As JSON by default. With `Accept: text/event-stream`: a server-sent event stream of every
    event so far (after `Last-Event-ID`), then one message per new event; it closes after
    the terminal event. Each message has `id` (the event id), `event` (its type) and `data`
    (the JobEvent as JSON).
    """
    session = db()
    job = jobs.get_job(session, current_tenant_id(), job_id)
    wanted = request.accept_mimetypes.best_match(["application/json", "text/event-stream"])
    if wanted == "text/event-stream":
        after_id = streaming.parse_last_event_id(request.headers.get("Last-Event-ID"))
        session.close()  # the stream opens its own short sessions per poll
        return streaming.event_stream_response(services().sessions, job.id, after_id)
    return jsonify({"data": [event_to_public(e) for e in jobs.list_events(session, job)]})
