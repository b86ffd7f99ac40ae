"""Typed objects of the API, built on the service's own schemas (editqueue/schemas.py).

The SDK's models subclass the shapes the API serves, so the two cannot drift; they accept
fields this SDK does not know yet (`extra="allow"`), so an older SDK keeps working against
a newer server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from editqueue import schemas

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
_LENIENT = ConfigDict(extra="allow")


class Output(schemas.JobOutput):
    """One stored result: `url` is a time-limited signed link."""

    model_config = _LENIENT


class JobError(schemas.JobError):
    model_config = _LENIENT


class Job(schemas.Job):
    """The Job object (`job.outputs[0].url`, `job.error.code`, …)."""

    model_config = _LENIENT
    outputs: list[Output]  # type: ignore[assignment]  # lists are invariant; items are Outputs
    error: JobError | None

    @property
    def done(self) -> bool:
        """Whether the job has ended (its status never changes again)."""
        return self.status in TERMINAL_STATUSES


class JobEvent(schemas.JobEvent):
    """One entry of a job's audit trail."""

    model_config = _LENIENT


class Batch(schemas.Batch):
    """A batch with live counts by status."""

    model_config = _LENIENT
    replayed: bool = False  # set by the SDK: the create was an idempotent replay

    @property
    def done(self) -> bool:
        """Whether every job of the batch has ended."""
        counts = self.counts
        return counts.succeeded + counts.failed + counts.canceled >= counts.total


class WebhookEndpoint(schemas.WebhookEndpoint):
    """A tenant webhook endpoint (`secret` only in create and rotate-secret answers)."""

    model_config = _LENIENT


class Delivery(schemas.DeliveryLogEntry):
    """One event to one target: its state and every attempt."""

    model_config = _LENIENT


class Event(BaseModel):
    """A verified webhook payload: `{"type", "timestamp", "data"}`."""

    model_config = _LENIENT
    type: str
    timestamp: str
    data: dict[str, Any]

    @property
    def job(self) -> Job | None:
        """`data` as a Job, for job.* events."""
        return Job.model_validate(self.data) if self.data.get("object") == "job" else None

    @property
    def batch(self) -> Batch | None:
        """`data` as a Batch, for batch.* events."""
        return Batch.model_validate(self.data) if self.data.get("object") == "batch" else None


class UsageRow(schemas.UsageRow):
    """One row of a usage report: counts and cost of one day, model or provider."""

    model_config = _LENIENT


class UsageTotal(schemas.UsageTotal):
    """A usage report's rows summed."""

    model_config = _LENIENT


class Usage(schemas.Usage):
    """`GET /v1/usage`: rows by key (day, model or provider) and a total (`from` is `from_`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    data: list[UsageRow]  # type: ignore[assignment]  # lists are invariant; items are rows
    total: UsageTotal
