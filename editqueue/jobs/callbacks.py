"""Vendor callbacks as hints: a matching one wakes its job; the result comes from a poll.

A callback body is never trusted for a job's result. KIE's signature covers only
`taskId.timestamp` and AceData signs nothing, so whoever learns a callback URL could post
any result links. All a callback may do is make a worker read the vendor's task now,
through the vendor's own task query.
"""

from __future__ import annotations

import enum
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session

from editqueue import tasknames
from editqueue.infra import outbox
from editqueue.jobs import states as jobs
from editqueue.jobs.status import TERMINAL
from editqueue.models import Job


class Outcome(enum.Enum):
    """What a callback led to."""

    REFUSED = "refused"  # not this job's task (or none yet): nothing written
    FINISHED = "finished"  # the job already ended: acknowledged, nothing written
    BUSY = "busy"  # a worker holds the job (storing, resubmitting): it needs no wake-up
    WOKEN = "woken"  # leased to a worker, which polls the vendor


def find_job(session: Session, provider: str, token: str) -> Job | None:
    """The job a callback URL names, provided the path's vendor is the job's vendor."""
    job = session.scalar(select(Job).where(Job.callback_token == token))
    if job is None or job.provider != provider:
        return None
    return job


def names_current_task(job: Job, task_id: str) -> bool:
    """Whether `task_id` is the vendor task the job is waiting on (none yet: it is not)."""
    current = job.provider_task_id or ""
    return bool(current) and hmac.compare_digest(task_id.encode(), current.encode())


def wake_for_callback(
    session: Session,
    job: Job,
    task_id: str,
    *,
    lease_seconds: float,
    publisher: outbox.Publisher,
) -> Outcome:
    """Wake `job` for a callback about `task_id`; commits and publishes when it wakes it."""
    if not names_current_task(job, task_id):
        return Outcome.REFUSED
    if job.status in TERMINAL:
        # Vendors retry and replay callbacks; an ended job's trail must not grow from them.
        return Outcome.FINISHED
    lease = jobs.wake(session, job.id, lease_seconds)
    if lease is None:
        return Outcome.BUSY
    jobs.record_event(
        session, job, "callback.received", {"provider": job.provider, "task_id": task_id}
    )
    session.commit()
    # Only the lease travels: the worker reads the task's state from the vendor itself.
    # The row's lease is the message's outbox: if it is lost, the sweep resumes the job.
    wake_up = outbox.Leased(tasknames.ADVANCE_JOB, (job.id, lease))
    outbox.publish_committed(session, publisher, [wake_up])
    return Outcome.WOKEN
