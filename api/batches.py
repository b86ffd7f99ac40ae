"""`/v1/batches`: up to 1,000 jobs in one call, validated all-or-nothing; live counts; cancel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from api import budgets
from api.auth import current_tenant_id
from api.bodies import idempotency_key, json_object
from api.errors import ApiProblem, validation_errors
from api.offload import run_all, run_blocking, run_sized
from api.openapi import header_param, operation
from api.state import db, services
from editqueue.infra import outbox
from editqueue.jobs import batches, idempotency
from editqueue.jobs.intake import InlineImages
from editqueue.schemas import Batch, BatchCreate, JobCreate

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")

IDEMPOTENCY_HEADER = header_param(
    "Idempotency-Key",
    {"type": "string", "maxLength": 255},
    "Same key and body → the original batch (200, Idempotent-Replayed: true); same key, "
    "different body → 422 idempotency_key_reused. Keys are kept at least 24 hours.",
)


def _json_object() -> tuple[dict[str, Any], bytes]:
    if request.mimetype != "application/json":
        raise ApiProblem(415, "send application/json", code="unsupported_media_type")
    return json_object()


def _validate(body: dict[str, Any]) -> tuple[BatchCreate, list[JobCreate]]:
    """The batch envelope and every item (defaults merged), or one 422 listing all errors."""
    try:
        spec = BatchCreate.model_validate(body)
    except ValidationError as exc:
        errors = validation_errors(exc)
        detail = f"{errors[0]['field']}: {errors[0]['message']}"
        raise ApiProblem(422, detail, errors=errors) from None
    unknown = batches.unknown_default_fields(spec.defaults)
    if unknown:
        errors = [{"field": f"defaults.{name}", "message": "unknown field"} for name in unknown]
        raise ApiProblem(422, f"defaults.{unknown[0]}: unknown field", errors=errors)
    items: list[JobCreate] = []
    errors = []
    for index, item in enumerate(spec.jobs):
        try:
            items.append(JobCreate.model_validate(batches.merge_defaults(item, spec.defaults)))
        except ValidationError as exc:
            errors.extend(validation_errors(exc, prefix=f"jobs[{index}]"))
    if errors:
        raise batches.too_many_errors(errors, len(spec.jobs))
    return spec, items


@bp.post("")
@operation(
    "Create a batch of up to 1,000 jobs",
    tags=["batches"],
    body=BatchCreate,
    headers=[IDEMPOTENCY_HEADER],
    response_headers={200: ("Location", "Idempotent-Replayed"), 202: ("Location",)},
    response_descriptions={
        200: "Replay of the batch first created with this Idempotency-Key",
        202: "Every job queued",
    },
    responses={200: Batch, 202: Batch, 400: None, 402: None, 413: None, 415: None, 422: None},
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Create up to 1,000 jobs at once; all of them are queued, or none is.

    Each item is a `POST /v1/jobs` body; `defaults` fill the fields an item lacks. Any
    invalid item fails the whole request with a 422 naming `jobs[i].field`. The answer is
    the Batch (202, `Location`); each job gets its own webhooks and `batch.completed` fires
    when the last one ends. `Idempotency-Key` replays as for jobs. Under a monthly budget
    the batch reserves the sum of its jobs' estimates at once: 402 `budget_exceeded` (with
    the amount `left`) when it does not fit, and no job of it is created.
    """
    tenant_id = current_tenant_id()
    svc = services()
    body, raw = _json_object()
    key = idempotency_key()
    # Serializing and hashing megabytes of data URLs takes a while: off the event loop.
    request_hash = run_sized(len(raw), idempotency.request_hash, body)
    session = db()
    if key:
        existing = batches.find_by_idempotency_key(session, tenant_id, key)
        if existing is not None:
            older = idempotency.raw_hash(raw)
            return _replayed(batches.check_replay(existing, request_hash, older))
    spec, items = _validate(body)
    new_jobs = batches.build_jobs(
        items,
        tenant_id=tenant_id,
        settings=svc.settings,
        storage=svc.storage,
        inline=InlineImages(run_blocking, run_all=run_all),
    )
    limit = budgets.tenant_budget()
    amount = budgets.estimate_jobs(new_jobs) if limit is not None else None
    created = batches.insert_batch(
        session,
        tenant_id,
        new_jobs,
        metadata=spec.metadata,
        idempotency_key=key,
        request_hash=request_hash,
    )
    messages: list[outbox.Message] = []
    if limit is not None and not created.replayed:
        # One reservation for the whole batch: it fits, or no job of it is created.
        messages = budgets.admit(
            session, tenant_id, new_jobs, amount, limit, when=created.batch.created_at
        )
    session.commit()
    if created.replayed:
        return _replayed(created.batch)
    outbox.publish_committed(session, svc.publisher, messages)
    svc.ring_dispatcher()
    # Just inserted: every job is queued, so the counts need no query.
    counts = batches.all_queued_counts(len(created.job_ids))
    public = batches.batch_to_public(created.batch, counts, created.job_ids)
    return jsonify(public), 202, {"Location": f"/v1/batches/{created.batch.id}"}


def _replayed(batch: Any) -> tuple[Response, int, dict[str, str]]:
    headers = {"Idempotent-Replayed": "true", "Location": f"/v1/batches/{batch.id}"}
    return jsonify(batches.describe(db(), batch)), 200, headers


@bp.get("/<batch_id>")
@operation("Get a batch with live counts", tags=["batches"], responses={200: Batch, 404: None})
def get(batch_id: str) -> Response:
    """The batch; counts by status are read from its jobs now."""
    session = db()
    batch = batches.get_batch(session, current_tenant_id(), batch_id)
    return jsonify(batches.describe(session, batch))


@bp.post("/<batch_id>/cancel")
@operation(
    "Cancel every job of a batch that has not ended",
    tags=["batches"],
    responses={200: Batch, 404: None},
)
def cancel(batch_id: str) -> Response:
    """Cancel the batch's live jobs (each gets its terminal event and webhooks)."""
    svc = services()
    session = db()
    tenant_id = current_tenant_id()
    messages = batches.cancel_batch(
        session, tenant_id, batch_id, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, messages)
    return jsonify(batches.describe(session, batches.get_batch(session, tenant_id, batch_id)))
