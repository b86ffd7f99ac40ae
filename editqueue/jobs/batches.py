"""Batches: many jobs validated all-or-nothing and inserted set-based in one transaction.

A batch is written as one Batch row, one multi-row INSERT of jobs, one of their
`job.created` events and a single outbox message that rings the dispatcher, which hands
the jobs to workers fairly among every tenant's (editqueue.dispatch). The counts the API
shows are read live from the jobs table; the batch row stores only how many of its jobs
are live, which fires `batch.completed` when it reaches 0 (editqueue.webhooks.batches).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import TextClause, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from editqueue import logs
from editqueue.config import Settings
from editqueue.errors import InvalidRequest, NotFound
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.infra.storage import Storage
from editqueue.jobs.idempotency import check_replay as check_replay  # api/ calls it here
from editqueue.jobs.intake import InlineImages, build_job, reserve_inline
from editqueue.jobs.lifecycle import cancel_live
from editqueue.jobs.states import NewJob, created_event_row, job_row, utcnow
from editqueue.jobs.status import TERMINAL, JobStatus
from editqueue.models import Batch, Job
from editqueue.schemas import JobCreate
from editqueue.serialize import timestamp
from editqueue.spend import budget
from editqueue.webhooks import batches as webhook_batches

log = logging.getLogger(__name__)

# The worker task that publishes a batch's submits (one broker message per batch from the API).

MAX_JOBS = 1000
# A 422 for a bad batch lists at most this many item errors (the detail says how many in all).
MAX_REPORTED_ERRORS = 100


@dataclass
class BatchCreated:
    """The outcome of a batch create: the batch, its job ids and the replay flag."""

    batch: Batch
    job_ids: list[str]
    replayed: bool


# -- building -------------------------------------------------------------------------------


def merge_defaults(item: dict[str, Any], defaults: dict[str, Any] | None) -> dict[str, Any]:
    """An item with the batch defaults under it; metadata merges key by key, the item winning."""
    if not defaults:
        return dict(item)
    merged = {**defaults, **item}
    if isinstance(defaults.get("metadata"), dict) and isinstance(item.get("metadata"), dict):
        merged["metadata"] = {**defaults["metadata"], **item["metadata"]}
    return merged


def unknown_default_fields(defaults: dict[str, Any] | None) -> list[str]:
    """Fields of `defaults` that no job accepts (reported once, not per item)."""
    return sorted(set(defaults or {}) - set(JobCreate.model_fields))


def too_many_errors(errors: list[dict[str, Any]], total_items: int) -> InvalidRequest:
    """The all-or-nothing 422: every item error (capped), with a summary detail."""
    bad_items = len({e["field"].split("]", 1)[0] for e in errors})
    first = f"{errors[0]['field']}: {errors[0]['message']}" if errors else ""
    detail = f"{bad_items} of {total_items} jobs are invalid; nothing was created. First: {first}"
    return InvalidRequest(detail, errors=errors[:MAX_REPORTED_ERRORS])


def build_jobs(
    specs: Sequence[JobCreate],
    *,
    tenant_id: str,
    settings: Settings,
    storage: Storage,
    inline: InlineImages | None = None,
) -> list[NewJob]:
    """Validate every item against the catalog (storing client bytes); 422 if any is bad.

    The whole batch shares one inline-image budget (``inline``), counted before any image
    is decoded: 413 past it. Ids come from one monotonic ULID generator, so ordering a
    batch's jobs by id gives back the order of `jobs` in the request.
    """
    inline = inline or InlineImages()
    for index, spec in enumerate(specs):
        reserve_inline(spec, inline, field_prefix=f"jobs[{index}].")
    build = functools.partial(build_job, tenant_id=tenant_id, settings=settings, storage=storage)
    built: list[NewJob] = []
    errors: list[dict[str, Any]] = []
    try:
        for index, spec in enumerate(specs):
            prefix = f"jobs[{index}]."
            try:
                built.append(build(spec, field_prefix=prefix, inline=inline))
            except InvalidRequest as exc:
                errors.extend(exc.errors or [{"field": prefix.rstrip("."), "message": exc.detail}])
        if errors:
            raise too_many_errors(errors, len(specs))
        inline.write_pending()
    except Exception:
        discard_inputs(built, storage)
        raise
    return built


def discard_inputs(built: Sequence[NewJob], storage: Storage) -> None:
    """Delete the client bytes stored for jobs that will not be created (best effort)."""
    # Nothing is created when one item fails, so the bytes already stored are orphans.
    for new in built:
        for item in new.inputs:
            if item.get("key"):
                try:
                    storage.delete(item["key"])
                except Exception as exc:  # cleanup is best effort; the 422 matters more
                    log.warning(
                        "batch.input.orphan_delete_failed",
                        extra=logs.fields(key=item["key"], error=str(exc)),
                    )


# -- creating -------------------------------------------------------------------------------


def find_by_idempotency_key(session: Session, tenant_id: str, key: str) -> Batch | None:
    """The batch created earlier with this key, if any."""
    return session.scalar(
        select(Batch).where(Batch.tenant_id == tenant_id, Batch.idempotency_key == key)
    )


def insert_batch(
    session: Session,
    tenant_id: str,
    new_jobs: Sequence[NewJob],
    *,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> BatchCreated:
    """Insert the batch, its queued jobs and their first events (the caller rings the
    dispatcher after commit)."""
    now = utcnow()
    batch = Batch(
        id=new_id("bat"),
        tenant_id=tenant_id,
        total=len(new_jobs),
        # Every job below is inserted queued, in this transaction: none can end before it.
        live_jobs=len(new_jobs),
        meta=metadata or {},
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
    )
    if idempotency_key:
        # A concurrent duplicate waits on the unique index, then gets the winner's batch.
        try:
            with session.begin_nested():
                session.add(batch)
                session.flush()
        except IntegrityError:
            existing = find_by_idempotency_key(session, tenant_id, idempotency_key)
            if existing is None:
                raise
            check_replay(existing, request_hash or "")
            return BatchCreated(existing, job_ids(session, existing.id), True)
    else:
        session.add(batch)
        session.flush()
    jobs = [job_row(n, tenant_id, now, batch_id=batch.id) for n in new_jobs]
    events = [created_event_row(n, tenant_id, now, batch_id=batch.id) for n in new_jobs]
    session.execute(
        _insert_rows_statement(tuple(jobs[0]), tuple(events[0])),
        {"jobs": _rows_json(jobs), "events": _rows_json(events)},
    )
    return BatchCreated(batch, [n.id for n in new_jobs], False)


def _rows_json(rows: list[dict[str, Any]]) -> str:
    """Table rows as one JSON array (timestamps in ISO 8601, amounts as strings)."""
    return json.dumps(rows, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value")


@functools.cache
def _insert_rows_statement(
    job_columns: tuple[str, ...], event_columns: tuple[str, ...]
) -> TextClause:
    """The jobs and their `job.created` events, each sent as one JSON array of rows.

    PostgreSQL unpacks the arrays (jsonb_populate_recordset casts each value to its
    column's type): one parameter per table instead of one per value, which spared the
    API most of a 1,000-job batch's time (psycopg adapting ~40,000 values one by one).
    """
    jobs, events = ", ".join(job_columns), ", ".join(event_columns)
    return text(
        f"WITH added AS (INSERT INTO jobs ({jobs})"
        f" SELECT {jobs} FROM jsonb_populate_recordset(NULL::jobs, CAST(:jobs AS jsonb)))"
        f" INSERT INTO job_events ({events})"
        f" SELECT {events} FROM jsonb_populate_recordset(NULL::job_events, CAST(:events AS jsonb))"
    )


# -- reading --------------------------------------------------------------------------------


def get_batch(session: Session, tenant_id: str, batch_id: str) -> Batch:
    """The tenant's batch, or NotFound (also for another tenant's batch)."""
    batch = session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id))
    if batch is None:
        raise NotFound(f"no batch {batch_id!r}")
    return batch


def job_ids(session: Session, batch_id: str) -> list[str]:
    """The batch's job ids in the order they were sent."""
    return list(session.scalars(select(Job.id).where(Job.batch_id == batch_id).order_by(Job.id)))


def live_job_ids(session: Session, batch_id: str) -> list[str]:
    """The batch's jobs that have not ended yet."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.batch_id == batch_id, Job.status.not_in(TERMINAL))
            .order_by(Job.id)
        )
    )


def count_jobs(session: Session, batch_id: str) -> dict[str, int]:
    """Counts of the batch's jobs by status, read live (one GROUP BY on the batch index)."""
    rows = session.execute(
        select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
    ).all()
    counts = {status.value: 0 for status in JobStatus}
    counts.update({status: int(n) for status, n in rows})
    return {"total": sum(counts.values()), **counts}


def all_queued_counts(total: int) -> dict[str, int]:
    """The counts of a batch just created."""
    return {"total": total, **{s.value: 0 for s in JobStatus}, JobStatus.QUEUED.value: total}


def batch_to_public(batch: Batch, counts: dict[str, int], ids: list[str]) -> dict[str, Any]:
    """The public Batch object."""
    return {
        "id": batch.id,
        "object": "batch",
        "counts": counts,
        "job_ids": ids,
        "metadata": batch.meta or {},
        "created_at": timestamp(batch.created_at),
        "completed_at": timestamp(batch.completed_at),
    }


def describe(session: Session, batch: Batch) -> dict[str, Any]:
    """The batch as the API shows it, with live counts."""
    return batch_to_public(batch, count_jobs(session, batch.id), job_ids(session, batch.id))


# -- canceling ------------------------------------------------------------------------------


def cancel_batch(
    session: Session, tenant_id: str, batch_id: str, *, storage: Storage, settings: Settings
) -> list[outbox.Message]:
    """Cancel every live job of the batch; returns the messages (webhooks) to publish.

    The live set is read in one query; each job then ends through the lifecycle's finishing
    claim, so it gets its single terminal event and webhooks, and a job a worker finishes
    meanwhile is simply skipped (that worker counts it off the batch).
    """
    get_batch(session, tenant_id, batch_id)
    messages: list[outbox.Message] = []
    ended: list[Job] = []
    with webhook_batches.counted_together(session, batch_id):
        for job_id in live_job_ids(session, batch_id):
            finished = cancel_live(
                session, job_id, storage=storage, settings=settings, settle=False
            )
            if finished is not None:
                messages.extend(finished.messages)
                ended.append(finished.job)
    # The batch row and then the spend row are locked once, after every job row, in the
    # order a single job's end takes them (see webhook_batches.counted_together and
    # budget.settle_all); batch.completed, if this ended the last jobs, has final counts.
    messages.extend(webhook_batches.jobs_ended(session, batch_id, len(ended), settings=settings))
    messages.extend(budget.settle_all(session, ended, settings=settings))
    return messages
