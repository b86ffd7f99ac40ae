"""The vocabularies of job and delivery rows: a job's status and stage, a delivery's state.

StrEnum members equal their strings, so rows, JSON and SQL keep the plain values.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job is in its life (the public `Job.status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class JobStage(enum.StrEnum):
    """Where a running job is: being submitted, waiting on a vendor task, or storing results."""

    SUBMIT = "submit"
    WAIT = "wait"
    STORE = "store"


class DeliveryState(enum.StrEnum):
    """Where a webhook delivery is (the public `Delivery.state`)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The one terminal set: a job in one of these never changes again.
TERMINAL: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)
# Statuses from which a job may still end (cancel, deadline).
LIVE: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)
