"""The tables. PostgreSQL is the source of truth; Redis only carries what these rows can rebuild."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from editqueue.db import Base
from editqueue.jobs.status import TERMINAL, DeliveryState, JobStage, JobStatus

# Kept for importers of the tuples; the vocabularies live in editqueue.jobs.status.
JOB_STATUSES: tuple[str, ...] = tuple(JobStatus)
TERMINAL_STATUSES: tuple[str, ...] = TERMINAL
JOB_STAGES: tuple[str, ...] = tuple(JobStage)
DELIVERY_STATES: tuple[str, ...] = tuple(DeliveryState)

Timestamp = DateTime(timezone=True)
Money = Numeric(18, 6)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Tenant(Base):
    """A customer account: owns keys, jobs and a default webhook signing secret."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    webhook_secret: Mapped[str] = mapped_column(String(100))
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(100))
    previous_webhook_secret_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # Jobs running at once for this tenant; None = the deployment default.
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    # Requests per second for each of its keys that sets none; None = the deployment default.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    # Spend control (editqueue.spend): NULL = no budget; the ratio of it that alerts.
    monthly_budget: Mapped[Decimal | None] = mapped_column(Money)
    budget_alert_ratio: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    # Days of history kept; NULL = the deployment's EDITQUEUE_RETENTION_DAYS (unset: forever).
    retention_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class ApiKey(Base):
    """An API key, stored only as its SHA-256 (keys are random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Requests per second for this key; None = the deployment default.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Job(Base):
    """One edit job and everything needed to resume it after any crash."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint(f"stage IS NULL OR {_in('stage', JOB_STAGES)}", name="stage"),
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_tenant_created", "tenant_id", text("id DESC")),
        # One (tenant, column, id DESC) index per list filter: a filtered page of
        # GET /v1/jobs is an ordered range read (migration 0007, bench/RESULTS.md).
        Index("ix_jobs_tenant_status_id", "tenant_id", "status", text("id DESC")),
        Index("ix_jobs_tenant_model", "tenant_id", "model", text("id DESC")),
        Index("ix_jobs_tenant_provider", "tenant_id", "provider", text("id DESC")),
        Index(
            "ix_jobs_batch_id",
            "batch_id",
            text("id DESC"),
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
        # Metadata containment within a tenant: GIN over {tenant_id: metadata}, so each
        # entry is tenant → key → value (editqueue.jobs.states.TENANT_METADATA).
        Index(
            "ix_jobs_tenant_metadata",
            text("jsonb_set('{}'::jsonb, ARRAY[tenant_id::text], metadata) jsonb_path_ops"),
            postgresql_using="gin",
        ),
        # The timer sweep and the reaper read only live rows.
        Index("ix_jobs_due", "next_poll_at", postgresql_where=text("status = 'running'")),
        Index(
            "ix_jobs_live_deadline",
            "deadline_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_jobs_queued", "dispatched_at", postgresql_where=text("status = 'queued'")),
        # The dispatcher's round robin: each tenant's oldest undispatched jobs.
        Index(
            "ix_jobs_undispatched",
            "tenant_id",
            "id",
            postgresql_where=text("status = 'queued' AND dispatched_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_pin: Mapped[str | None] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    provider_options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The routing's record of vendor attempts (editqueue/jobs/attempts.py); the public
    # `usage.attempts` is built from it. Older rows keep theirs in `usage` instead.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What submission reserved against the tenant's budget (NULL: no known price).
    cost_estimate: Mapped[Decimal | None] = mapped_column(Money)
    # The routing strategy asked for by the job (NULL: the model's configured one).
    routing: Mapped[str | None] = mapped_column(String(16))
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str]] = mapped_column(JSONB, default=list)
    provider_task_id: Mapped[str | None] = mapped_column(String(200))
    callback_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    # A claim on the job's next step: whoever holds the lease id in a message may act.
    lease_id: Mapped[str | None] = mapped_column(String(40))
    # The job's timer: when to look at it next (poll, or take over from a dead worker).
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    deadline_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=func.now(), onupdate=func.now()
    )


class JobEvent(Base):
    """The job's audit trail; at most one terminal event per job, enforced by the database."""

    __tablename__ = "job_events"
    __table_args__ = (
        Index("ix_job_events_job", "job_id", "id"),
        Index(
            "uq_job_events_terminal",
            "job_id",
            unique=True,
            postgresql_where=text("terminal"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(64))
    terminal: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class OutboxMessage(Base):
    """A task to publish, written in the same transaction as the change that needs it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    published_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Delivery(Base):
    """One webhook event to one target, with the outcome of its latest attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        UniqueConstraint("event_id", "url", name="uq_deliveries_event_url"),
        Index("ix_deliveries_job", "job_id", "id"),
        Index("ix_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        # Tenant-event deliveries (no job to cascade from), walked by history retention.
        Index(
            "ix_deliveries_tenant_jobless",
            "tenant_id",
            "id",
            postgresql_where=text("job_id IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL")
    )
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_id: Mapped[str | None] = mapped_column(String(40))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_ms: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class WebhookEndpoint(Base):
    """A tenant's webhook endpoint: a URL, the event types it wants, and its own secret."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant", "tenant_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    # Event types it subscribes to; an empty list means every type.
    events: Mapped[list[str]] = mapped_column(JSONB, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    # During a rotation deliveries are signed with both secrets until this time.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Start of the current run of failed attempts; reset by any success.
    failing_since: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        Timestamp, server_default=func.now(), onupdate=func.now()
    )


class DeliveryAttempt(Base):
    """One POST of a delivery: the attempt log behind `…/deliveries`."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_ms: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class TenantEvent(Base):
    """An event about the tenant rather than one job (`batch.completed`,
    `webhook_endpoint.disabled`): what such deliveries carry."""

    __tablename__ = "tenant_events"
    __table_args__ = (Index("ix_tenant_events_tenant", "tenant_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class Batch(Base):
    """A group of jobs created in one call; its API counts are read live from its jobs."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_batches_tenant_idempotency"),
        Index("ix_batches_tenant", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    total: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    # Jobs not yet ended: set at insert, decremented by each job's finishing transaction,
    # so the one that takes it to 0 knows it ended the last (editqueue.webhooks.batches).
    live_jobs: Mapped[int] = mapped_column(Integer, server_default="0")
    # Set once, by whoever ends the last job (the claim that fires batch.completed).
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class TenantSpend(Base):
    """A tenant's spend in one calendar month (UTC): reserved by live jobs, spent by ended ones."""

    __tablename__ = "tenant_spend"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    reserved: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    spent: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    # Set when the month's tenant.budget_threshold event fired, so it fires once.
    threshold_fired_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
