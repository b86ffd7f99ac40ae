"""The job state machine: create, claim, transition, finish, cancel.

Every transition is a conditional UPDATE on the row's current state, so duplicated or
late tasks find nothing to do, and exactly one finisher wins.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from ulid import ULID

from editqueue.db import DriverStatement, affected_rows, instance_from, loaded_instance
from editqueue.errors import NotFound
from editqueue.ids import new_id, new_token
from editqueue.jobs.idempotency import check_replay as check_replay  # api/ calls it here
from editqueue.jobs.status import TERMINAL, JobStage, JobStatus
from editqueue.models import Job, JobEvent

log = logging.getLogger(__name__)

TERMINAL_EVENT: dict[str, str] = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELED: "job.canceled",
}


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass
class NewJob:
    """A validated job, ready to insert (built by editqueue.intake)."""

    model: str
    prompt: str
    params: dict[str, Any]
    inputs: list[dict[str, Any]]
    provider_pin: str | None
    provider_options: dict[str, Any]
    webhook_url: str | None
    webhook_events: list[str]
    metadata: dict[str, str]
    deadline_seconds: int
    id: str = field(default_factory=lambda: new_id("job"))
    batch_id: str | None = None
    # What submission reserves against the tenant's budget (editqueue/spend/budget.py);
    # None: no budget, or no known price.
    cost_estimate: Decimal | None = None
    # The routing strategy the job asked for (None: its model's configured one).
    routing: str | None = None


@dataclass
class Created:
    """The outcome of a create: the job and whether it was an idempotent replay."""

    job: Job
    replayed: bool


def record_event(
    on: Session | Connection,
    job: Job,
    type_: str,
    detail: dict[str, Any] | None = None,
    *,
    terminal: bool = False,
) -> JobEvent | None:
    """Append to the job's audit trail (in the caller's transaction, if any).

    The terminal event is written by the finishing claim itself. Any other event is
    written only while the job is live, and None is returned otherwise: a step still
    working when the job was canceled or timed out adds nothing after the terminal event.
    """
    event = JobEvent(
        id=new_id("evt"),
        job_id=job.id,
        tenant_id=job.tenant_id,
        type=type_,
        terminal=terminal,
        detail=detail or {},
        at=utcnow(),
    )
    values = {c.name: getattr(event, c.key) for c in _EVENTS.columns if c.name != "terminal"}
    if terminal:
        _TERMINAL_EVENT.execute(on, values)
        return event
    written = _LIVE_EVENT.execute(on, values).fetchone()
    return event if written else None


# The terminal event's finishing claim already won: no condition.
_TERMINAL_EVENT = DriverStatement(
    "INSERT INTO job_events (id, job_id, tenant_id, type, terminal, detail, at)"
    " VALUES (:id, :job_id, :tenant_id, :type, true, :detail, :at)",
    json=["detail"],
)
# A non-terminal event, only while its job is live. FOR SHARE makes the check hold until
# commit: a terminal transition racing with it (an UPDATE of the row) waits for this
# transaction, or this one sees the ended job.
_LIVE_EVENT = DriverStatement(
    "INSERT INTO job_events (id, job_id, tenant_id, type, terminal, detail, at)"
    " SELECT :id, jobs.id, :tenant_id, :type, false, :detail, :at FROM jobs"
    " WHERE jobs.id = :job_id AND jobs.status IN ('queued', 'running')"
    " FOR SHARE RETURNING job_events.id",
    json=["detail"],
)


_JOBS = Job.__table__
_EVENTS = JobEvent.__table__


def find_by_idempotency_key(on: Session | Connection, tenant_id: str, key: str) -> Job | None:
    """The job created earlier with this key, if any."""
    if isinstance(on, Session):
        return on.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))
    query = select(_JOBS).where(_JOBS.c.tenant_id == tenant_id, _JOBS.c.idempotency_key == key)
    row = on.execute(query).first()
    return None if row is None else instance_from(Job, zip(row._fields, row, strict=True))


def job_row(
    new: NewJob,
    tenant_id: str,
    now: dt.datetime,
    *,
    batch_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """A new queued job as a `jobs` table row (column names, not attribute names)."""
    return {
        "id": new.id,
        "tenant_id": tenant_id,
        "batch_id": batch_id,
        "status": JobStatus.QUEUED,
        "model": new.model,
        "prompt": new.prompt,
        "params": new.params,
        "provider_pin": new.provider_pin,
        "provider_options": new.provider_options,
        "inputs": new.inputs,
        "outputs": [],
        "attempt_log": [],
        "attempts": 0,
        "poll_count": 0,
        "metadata": new.metadata,
        "webhook_url": new.webhook_url,
        "webhook_events": new.webhook_events,
        "callback_token": new_token(24),
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "deadline_at": now + dt.timedelta(seconds=new.deadline_seconds),
        "created_at": now,
        "updated_at": now,
        "dispatched_at": None,  # the fair dispatcher decides when workers get it
        "cost_estimate": new.cost_estimate,
        "routing": new.routing,
    }


def created_event_row(
    new: NewJob, tenant_id: str, now: dt.datetime, *, batch_id: str | None = None
) -> dict[str, Any]:
    """The `job.created` event of a new job as a `job_events` table row."""
    detail: dict[str, Any] = {"model": new.model}
    if batch_id:
        detail["batch_id"] = batch_id
    return {
        "id": new_id("evt"),
        "job_id": new.id,
        "tenant_id": tenant_id,
        "type": "job.created",
        "terminal": False,
        "detail": detail,
        "at": now,
    }


# What every new job starts with, written into the statement instead of sent: fewer
# parameters for the driver to adapt (a dozen fewer than job_row's columns and the event's).
_AT_CREATION = {
    "status": "'queued'",
    "outputs": "'[]'",
    "attempt_log": "'[]'",
    "attempts": "0",
    "poll_count": "0",
    "dispatched_at": "NULL",
    "updated_at": ":created_at",
}


@functools.lru_cache(maxsize=4)
def _insert_job_statement(keys: tuple[str, ...], *, idempotent: bool) -> DriverStatement:
    """One round trip for the job (the columns `keys`) and its `job.created` event, built
    once and sent to the driver as it is (psycopg prepares it after a few uses).

    With `idempotent`, a row already holding the tenant's key makes both inserts no-ops
    (the caller then reads the winner) instead of failing the transaction.
    """
    names = ", ".join(keys)
    values = ", ".join(_AT_CREATION.get(key, f":{key}") for key in keys)
    conflict = (
        " ON CONFLICT ON CONSTRAINT uq_jobs_tenant_idempotency DO NOTHING" if idempotent else ""
    )
    sent = [key for key in keys if key not in _AT_CREATION]
    return DriverStatement(
        f"WITH added AS (INSERT INTO jobs ({names}) VALUES ({values}){conflict} RETURNING id)"
        " INSERT INTO job_events (id, job_id, tenant_id, type, terminal, detail, at)"
        " SELECT :event_id, added.id, :tenant_id, 'job.created', false, :event_detail,"
        " :created_at FROM added RETURNING job_id",
        json=[key for key in sent if isinstance(_JOBS.c[key].type, JSONB)] + ["event_detail"],
    )


def insert_job(
    on: Session | Connection,
    tenant_id: str,
    new: NewJob,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Created:
    """Insert a queued job and its first event in one statement.

    No outbox message: the job waits in the table until the dispatcher picks it, which
    beat runs every second and the caller rings after commit (a lost ring costs that second).
    A concurrent request with the same Idempotency-Key waits on the unique index, inserts
    nothing, and gets the winner's job.
    """
    now = utcnow()
    row = job_row(new, tenant_id, now, idempotency_key=idempotency_key, request_hash=request_hash)
    event = created_event_row(new, tenant_id, now)
    statement = _insert_job_statement(tuple(row), idempotent=bool(idempotency_key))
    values = {k: v for k, v in row.items() if k not in _AT_CREATION}
    values["event_id"] = event["id"]
    values["event_detail"] = event["detail"]
    if statement.execute(on, values).fetchone() is None:
        existing = find_by_idempotency_key(on, tenant_id, idempotency_key or "")
        if existing is None:
            raise RuntimeError("job insert conflicted without an idempotency key")
        return Created(check_replay(existing, request_hash or ""), True)
    return Created(instance_from(Job, row.items()), False)


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """The tenant's job, or NotFound (also for another tenant's job)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


@dataclass
class JobFilter:
    """Filters of `GET /v1/jobs`, already validated."""

    statuses: Sequence[str] = ()
    model: str | None = None
    provider: str | None = None
    batch_id: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# Job ids are ULIDs minted by the API's clock, `created_at` is the database's: a creation
# window also bounds the id, widened by this much, so the page walks the (tenant, id)
# index from the window's end instead of reading every newer row of the tenant first.
ID_CLOCK_SLACK = dt.timedelta(hours=1)
# {tenant_id: metadata}: `@>` on it is metadata containment within the tenant, answered by
# the GIN index ix_jobs_tenant_metadata (migration 0007) on exactly this expression.
TENANT_METADATA = literal_column(
    "jsonb_set('{}'::jsonb, ARRAY[jobs.tenant_id::text], jobs.metadata)", JSONB
)


def id_floor(prefix: str, moment: dt.datetime) -> str:
    """The smallest id of `prefix` minted at `moment` (ids sort by their minting time)."""
    millis = max(0, int(moment.timestamp() * 1000))
    return f"{prefix}_{ULID.from_bytes(millis.to_bytes(6, 'big') + bytes(10))}"


def _id_bound(moment: dt.datetime, slack: dt.timedelta) -> str | None:
    """id_floor of `moment + slack`; None at the calendar's ends (no bound is needed there)."""
    try:
        return id_floor("job", moment + slack)
    except (OverflowError, ValueError):
        return None


def list_query(
    tenant_id: str, filters: JobFilter, *, limit: int, before_id: str | None
) -> Select[Job]:
    """The SELECT behind `list_jobs` (`limit` rows; bench/history.py EXPLAINs it)."""
    if filters.metadata:
        # The tenant-keyed metadata index already holds only this tenant's matches; a
        # plain `tenant_id =` would tempt the planner to AND it with a bitmap of every row
        # of the tenant (2x slower for a big one), so the same check is made unindexable.
        query = select(Job).where(Job.tenant_id.concat("") == tenant_id)
    else:
        query = select(Job).where(Job.tenant_id == tenant_id)
    if before_id:
        query = query.where(Job.id < before_id)
    if filters.statuses:
        query = query.where(Job.status.in_(filters.statuses))
    if filters.model:
        query = query.where(Job.model == filters.model)
    if filters.provider:
        query = query.where(Job.provider == filters.provider)
    if filters.batch_id:
        query = query.where(Job.batch_id == filters.batch_id)
    if filters.created_after:
        query = query.where(Job.created_at >= filters.created_after)  # inclusive
        floor = _id_bound(filters.created_after, -ID_CLOCK_SLACK)
        if floor:
            query = query.where(Job.id >= floor)
    if filters.created_before:
        query = query.where(Job.created_at < filters.created_before)
        ceiling = _id_bound(filters.created_before, ID_CLOCK_SLACK)
        if ceiling:
            query = query.where(Job.id < ceiling)
    if filters.metadata:
        # The same expression as ix_jobs_tenant_metadata, so that index answers it.
        wanted = bindparam("tenant_metadata", {tenant_id: filters.metadata}, type_=JSONB)
        query = query.where(TENANT_METADATA.op("@>")(wanted))
    return query.order_by(Job.id.desc()).limit(limit)


def list_jobs(
    session: Session, tenant_id: str, filters: JobFilter, *, limit: int, before_id: str | None
) -> tuple[list[Job], bool]:
    """A page of jobs, newest first, keyed on the time-sortable id (stable under inserts)."""
    query = list_query(tenant_id, filters, limit=limit + 1, before_id=before_id)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def list_events(session: Session, job: Job, *, after_id: str | None = None) -> list[JobEvent]:
    """The job's events in order (optionally only those after an event id)."""
    query = select(JobEvent).where(JobEvent.job_id == job.id)
    if after_id:
        query = query.where(JobEvent.id > after_id)
    return list(session.scalars(query.order_by(JobEvent.id)))


# -- claims -------------------------------------------------------------------------------
#
# A claimed step owns its job: the row's `lease_id` is the step's own token until the step
# hands the job on (a timer, a fresh attempt) or ends it, and `next_poll_at` is the lease's
# end, which the working process keeps renewing (editqueue.heartbeat). Transitions made by
# a step name its token, so a step that lost its lease to a takeover changes nothing.


def new_lease() -> str:
    """A fresh lease token (a claim's or a hand-out's)."""
    return str(uuid.uuid4())


# The hot transitions run as statements built once: constructing an ORM UPDATE per call
# costs the worker more CPU than PostgreSQL spends running it. Each sets `updated_at`
# itself (the column's ORM onupdate only applies to statements SQLAlchemy builds).
_CLAIM_QUEUED = DriverStatement(
    "UPDATE jobs SET status = 'running', stage = 'submit',"
    " started_at = coalesce(started_at, now()),"
    " next_poll_at = now() + make_interval(secs => :lease_seconds),"
    " lease_id = :lease, updated_at = now()"
    " WHERE id = :id AND status = 'queued' RETURNING *"
)
_CLAIM_LEASE = DriverStatement(
    "UPDATE jobs SET lease_id = :lease, updated_at = now(),"
    " next_poll_at = now() + make_interval(secs => :lease_seconds)"
    " WHERE id = :id AND lease_id = :handed_out AND status = 'running' RETURNING *"
)


def claim_queued(session: Session, job_id: str, lease_seconds: float) -> Job | None:
    """queued → running (stage submit), leased to the caller; None if someone else has it."""
    params = {"id": job_id, "lease": new_lease(), "lease_seconds": lease_seconds}
    return loaded_instance(Job, _CLAIM_QUEUED.execute(session, params))


def claim_lease(session: Session, job_id: str, lease_id: str, lease_seconds: float) -> Job | None:
    """Take the step a sweep handed out, under a lease of the caller's own; a duplicate
    message finds the handed-out lease gone."""
    params = {
        "id": job_id,
        "handed_out": lease_id,
        "lease": new_lease(),
        "lease_seconds": lease_seconds,
    }
    return loaded_instance(Job, _CLAIM_LEASE.execute(session, params))


@dataclass(frozen=True)
class DueStep:
    """A leased job step and the seconds until its timer comes (0: due already)."""

    job_id: str
    lease_id: str
    wait: float


def sweep_due(
    session: Session, *, limit: int, lease_seconds: float, ahead: float = 0.0
) -> list[DueStep]:
    """Lease running jobs whose timer comes within `ahead` seconds: polls, retries, or
    work whose worker died.

    Looking ahead one sweep period lets the caller publish each step due before the next
    sweep at its due time, so a 2 s poll lands at 2 s rather than at the first sweep after
    it; the timer itself stays here, and a lost message costs one lease period.
    """
    rows = session.execute(
        text(
            "UPDATE jobs SET lease_id = gen_random_uuid()::text,"
            " next_poll_at = now() + make_interval(secs => :lease)"
            " FROM (SELECT id, next_poll_at AS due FROM jobs WHERE status = 'running'"
            "   AND next_poll_at <= now() + make_interval(secs => :ahead)"
            "   ORDER BY next_poll_at LIMIT :limit FOR UPDATE SKIP LOCKED) AS picked"
            " WHERE jobs.id = picked.id"
            " RETURNING jobs.id, jobs.lease_id,"
            "   greatest(0, extract(epoch FROM picked.due - clock_timestamp()))::float AS wait"
        ),
        {"limit": limit, "lease": lease_seconds, "ahead": ahead},
    ).all()
    return [DueStep(r.id, r.lease_id, r.wait) for r in rows]


def wake(session: Session, job_id: str, lease_seconds: float) -> str | None:
    """Hand a waiting job to a worker now (a vendor callback arrived); returns the lease."""
    return session.execute(
        text(
            "UPDATE jobs SET lease_id = gen_random_uuid()::text,"
            " next_poll_at = now() + make_interval(secs => :lease)"
            " WHERE id = :id AND status = 'running' AND stage = 'wait'"
            " RETURNING lease_id"
        ),
        {"id": job_id, "lease": lease_seconds},
    ).scalar_one_or_none()


@dataclass(frozen=True)
class DueDeadline:
    """A live job whose deadline comes within the look-ahead, and the seconds until it."""

    job_id: str
    wait: float
    provider: str | None


def due_deadlines(session: Session, *, ahead: float, limit: int = 500) -> list[DueDeadline]:
    """Live jobs whose deadline comes within `ahead` seconds (or has passed).

    Nothing is leased: ending a job is an atomic claim, so the same job listed by two
    runs only ends once; the caller ends each at its deadline, not at the next run.
    """
    rows = session.execute(
        text(
            "SELECT id, provider,"
            "   greatest(0, extract(epoch FROM deadline_at - clock_timestamp()))::float AS wait"
            " FROM jobs WHERE status IN ('queued', 'running')"
            "   AND deadline_at <= now() + make_interval(secs => :ahead)"
            " ORDER BY deadline_at LIMIT :limit"
        ),
        {"ahead": ahead, "limit": limit},
    ).all()
    return [DueDeadline(r.id, r.wait, r.provider) for r in rows]


# -- transitions within running ------------------------------------------------------------


def _owned(job_id: str, lease: str | None) -> list[Any]:
    """The WHERE of a step's transition: the job is live and (given a lease) still the step's."""
    conditions = [Job.id == job_id, Job.status == JobStatus.RUNNING]
    if lease is not None:
        conditions.append(Job.lease_id == lease)
    return conditions


def set_waiting(
    session: Session,
    job_id: str,
    *,
    provider: str,
    task_id: str,
    delay: float,
    usage: dict,
    lease: str | None = None,
) -> bool:
    """submit → wait: the vendor took the task; look again after `delay` seconds."""
    result = session.execute(
        update(Job)
        .where(*_owned(job_id, lease))
        .values(
            stage=JobStage.WAIT,
            provider=provider,
            provider_task_id=task_id,
            usage=usage,
            lease_id=None,
            next_poll_at=func.now() + dt.timedelta(seconds=delay),
        )
    )
    return affected_rows(result) == 1


def schedule(
    session: Session,
    job_id: str,
    *,
    delay: float,
    stage: str | None = None,
    lease: str | None = None,
    **values: Any,
) -> bool:
    """Set the job's timer (next poll, or a retry of the current stage) and other fields.

    This hands the job on: the step's lease ends, and the sweep leases it again when due.
    """
    if stage is not None:
        values["stage"] = stage
    result = session.execute(
        update(Job)
        .where(*_owned(job_id, lease))
        .values(next_poll_at=func.now() + dt.timedelta(seconds=delay), lease_id=None, **values)
    )
    return affected_rows(result) == 1


def requeue_attempt(
    session: Session,
    job_id: str,
    *,
    delay: float,
    attempt_log: list[dict[str, Any]],
    lease: str | None = None,
    refund: bool = False,
) -> bool:
    """Start a fresh attempt (another route, or the same after a back-off) after `delay`.

    `attempt_log` is the job's log with the attempt just ended; `refund` gives that attempt
    back to the budget (the vendor said 429).
    """
    extra: dict[str, Any] = {"attempts": Job.attempts - 1} if refund else {}
    return schedule(
        session,
        job_id,
        delay=delay,
        stage=JobStage.SUBMIT,
        lease=lease,
        attempt_log=attempt_log,
        provider_task_id=None,
        **extra,
    )


# `_owned` as SQL: a running job, and the caller's lease when it names one.
_BEGIN_ATTEMPT = DriverStatement(
    "UPDATE jobs SET attempts = attempts + 1, provider = :provider,"
    " usage = coalesce(:usage, usage), inputs = coalesce(:inputs, inputs), updated_at = now()"
    " WHERE id = :id AND status = 'running'"
    " AND (CAST(:lease AS text) IS NULL OR lease_id = :lease) RETURNING attempts",
    json_or_null=["usage", "inputs"],
)


def begin_attempt(
    session: Session,
    job_id: str,
    provider: str,
    *,
    lease: str | None = None,
    usage: dict[str, Any] | None = None,
    inputs: list[dict[str, Any]] | None = None,
) -> int | None:
    """Count a vendor submission just before it is made, and name the vendor it goes to;
    `usage` (with why that vendor was chosen, `usage.routing`) and `inputs` (images just
    fetched and stored) are kept in the same UPDATE.

    None when the job ended (or the step lost its lease) meanwhile: make no call then.
    """
    params = {"id": job_id, "provider": provider, "lease": lease, "usage": usage, "inputs": inputs}
    row = _BEGIN_ATTEMPT.execute(session, params).fetchone()
    return None if row is None else int(row[0])


# usage may be SQL NULL or JSON null before any attempt ended: both read as {}. A row of an
# older version keeps its attempts in usage (editqueue.jobs.attempts); the log starts there.
_NOTE_ATTEMPT = text(
    "WITH old AS (SELECT usage, CASE WHEN jsonb_array_length(attempt_log) > 0 THEN attempt_log"
    "   WHEN jsonb_typeof(usage -> 'attempts') = 'array' THEN usage -> 'attempts'"
    "   ELSE '[]'::jsonb END AS log FROM jobs WHERE id = :id FOR UPDATE)"
    " UPDATE jobs SET provider = coalesce(jobs.provider, :provider),"
    " provider_task_id = coalesce(jobs.provider_task_id, :task_id),"
    " usage = jsonb_strip_nulls(jsonb_build_object('provider_task_id', CAST(:task_id AS text)))"
    "   || CASE WHEN jsonb_typeof(old.usage) = 'object' THEN old.usage ELSE '{}'::jsonb END,"
    " attempt_log = old.log || jsonb_build_array(:entry)"
    " FROM old WHERE jobs.id = :id AND NOT old.log @> jsonb_build_array(:key)"
).bindparams(bindparam("entry", type_=JSONB), bindparam("key", type_=JSONB))


def note_attempt(
    session: Session, job_id: str, *, provider: str, entry: dict, task_id: str | None = None
) -> None:
    """Record what an attempt did when its step could no longer move the job on.

    The job ended (canceled, timed out) or was taken over while the vendor call was in
    flight; which vendor was called and what it answered are still facts about the job.
    Append-only: whatever the job's row already says is kept, and an attempt already on
    record with this outcome (a racing step of the same job wrote it) is not added twice.
    """
    key = {k: entry.get(k) for k in ("provider", "attempt", "outcome")}
    values = {"id": job_id, "provider": provider, "task_id": task_id, "entry": entry, "key": key}
    session.execute(_NOTE_ATTEMPT, values)


# Where outputs, usage or attempt_log is None the column keeps its value (SQL NULL, then
# coalesce); a job without an error keeps JSON null, as the ORM wrote it.
_FINISH = DriverStatement(
    "UPDATE jobs SET status = :status, stage = NULL, lease_id = NULL,"
    " next_poll_at = NULL, completed_at = now(), updated_at = now(), error = :error,"
    " outputs = coalesce(:outputs, outputs), usage = coalesce(:usage, usage),"
    " attempt_log = coalesce(:attempt_log, attempt_log),"
    " provider = coalesce(:provider, provider)"
    " WHERE id = :id AND status = ANY(:from_statuses) RETURNING *",
    json=["error"],
    json_or_null=["outputs", "usage", "attempt_log"],
)


_SET_USAGE = DriverStatement("UPDATE jobs SET usage = :usage WHERE id = :id", json=["usage"])


def set_usage(session: Session, job_id: str, usage: dict[str, Any]) -> None:
    """Replace the job's usage (in the caller's transaction)."""
    _SET_USAGE.execute(session, {"id": job_id, "usage": usage})


def finish(
    session: Session,
    job_id: str,
    status: str,
    *,
    outputs: list[dict] | None = None,
    error: dict | None = None,
    usage: dict | None = None,
    attempt_log: list[dict[str, Any]] | None = None,
    from_statuses: Sequence[str] = (JobStatus.RUNNING,),
    provider: str | None = None,
) -> Job | None:
    """The atomic finishing claim: one caller moves the job to a terminal state, or nobody.

    `provider`: the vendor whose result ends the job, named in the same UPDATE."""
    assert status in TERMINAL
    params = {
        "id": job_id,
        "status": str(status),
        "error": error,
        "outputs": outputs,
        "usage": usage,
        "attempt_log": attempt_log,
        "provider": provider,
        "from_statuses": [str(s) for s in from_statuses],
    }
    return loaded_instance(Job, _FINISH.execute(session, params))
