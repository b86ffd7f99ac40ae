"""Consistency audit: the invariants the service promises, checked against what it stored.

- every job is terminal (once the system has had time to drain);
- every job has exactly one terminal event, and it matches the job's status;
- every succeeded job's outputs exist in storage with the recorded size and sha256;
- every delivery was received at least once with a valid signature (given receipts);
- no vendor task was submitted more often than the job counted attempts (given counts).

`editqueue audit` runs the storage and event checks against a live deployment; the soak
test adds the receipts of its webhook receivers and the sandbox's submission counts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from editqueue.infra.storage import LocalStorage, Storage, StorageError
from editqueue.jobs.states import TERMINAL_EVENT
from editqueue.jobs.status import TERMINAL, JobStatus
from editqueue.models import (
    Delivery,
    Job,
    JobEvent,
    Tenant,
    WebhookEndpoint,
)
from editqueue.webhooks.signing import verify


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    kind: str
    job_id: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.job_id or '-'}: {self.detail}"


@dataclass(frozen=True)
class Receipt:
    """A webhook request as a receiver saw it."""

    url: str
    headers: Mapping[str, str]
    body: bytes


def _jobs(session: Session, job_ids: Sequence[str] | None) -> list[Job]:
    query = select(Job)
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    return list(session.scalars(query.order_by(Job.id)))


def check_terminal(jobs: Iterable[Job]) -> list[Violation]:
    """Every job has reached a terminal state."""
    return [
        Violation("not_terminal", job.id, f"status {job.status}")
        for job in jobs
        if job.status not in TERMINAL
    ]


def check_terminal_events(session: Session, jobs: Sequence[Job]) -> list[Violation]:
    """Exactly one terminal event per terminal job, of the type its status says."""
    terminal_types = set(TERMINAL_EVENT.values())
    counts: Counter[tuple[str, str]] = Counter()
    ids = [job.id for job in jobs]
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(JobEvent.job_id, JobEvent.type).where(
                JobEvent.job_id.in_(ids[start : start + 1000]),
                JobEvent.type.in_(terminal_types),
            )
        )
        counts.update((job_id, type_) for job_id, type_ in rows)
    violations = []
    for job in jobs:
        if job.status not in TERMINAL:
            continue
        seen = {t: n for (j, t), n in counts.items() if j == job.id}
        total = sum(seen.values())
        if total != 1:
            violations.append(
                Violation("terminal_events", job.id, f"{total} terminal events: {seen}")
            )
        elif TERMINAL_EVENT[job.status] not in seen:
            violations.append(
                Violation("terminal_events", job.id, f"status {job.status} but event {seen}")
            )
    return violations


def check_outputs(jobs: Iterable[Job], storage: Storage) -> list[Violation]:
    """Every output of a succeeded job is in storage, with its recorded size and sha256."""
    violations = []
    for job in jobs:
        if job.status != JobStatus.SUCCEEDED:
            continue
        if not job.outputs:
            violations.append(Violation("outputs", job.id, "succeeded without outputs"))
        for output in job.outputs:
            try:
                data = storage.get(output["key"])
            except StorageError as exc:
                violations.append(Violation("outputs", job.id, f"{output['key']}: {exc}"))
                continue
            if len(data) != output["bytes"] or hashlib.sha256(data).hexdigest() != output["sha256"]:
                violations.append(
                    Violation("outputs", job.id, f"{output['key']}: size or sha256 differs")
                )
    return violations


def check_deliveries(
    session: Session, jobs: Sequence[Job], receipts: Iterable[Receipt]
) -> list[Violation]:
    """Each delivery of these jobs reached its URL at least once, correctly signed."""
    tenant_secrets = {
        t.id: [s for s in (t.webhook_secret, t.previous_webhook_secret) if s]
        for t in session.scalars(select(Tenant))
    }
    endpoint_secrets = {
        e.id: [s for s in (e.secret, e.previous_secret) if s]
        for e in session.scalars(select(WebhookEndpoint))
    }
    got: dict[tuple[str, str], list[Receipt]] = {}
    for receipt in receipts:
        event_id = {k.lower(): v for k, v in receipt.headers.items()}.get("webhook-id", "")
        got.setdefault((event_id, receipt.url), []).append(receipt)
    ids = [job.id for job in jobs]
    violations = []
    for start in range(0, len(ids), 1000):
        deliveries = session.scalars(
            select(Delivery).where(Delivery.job_id.in_(ids[start : start + 1000]))
        )
        for delivery in deliveries:
            seen = got.get((delivery.event_id, delivery.url), [])
            if delivery.endpoint_id:
                secrets = endpoint_secrets.get(delivery.endpoint_id, [])
            else:
                secrets = tenant_secrets.get(delivery.tenant_id, [])
            if not seen:
                # The state tells a loss (recorded as sent, never received) from a
                # delivery still retrying or one that gave up.
                detail = (
                    f"{delivery.event_type} never arrived "
                    f"(delivery {delivery.state}, attempt {delivery.attempt})"
                )
                violations.append(Violation("webhook", delivery.job_id, detail))
            elif not any(
                verify(secret, dict(r.headers), r.body, tolerance=10**9)
                for r in seen
                for secret in secrets
            ):
                violations.append(
                    Violation("webhook", delivery.job_id, f"{delivery.event_type}: bad signature")
                )
    return violations


def check_storage_reachable(storage: Storage) -> None:
    """Raise StorageError when `storage` is not where results live at all.

    Auditing the wrong place would report every stored output as missing; a local root
    that does not exist is that mistake (a different data dir than the worker's), so it
    is refused outright rather than created as the service's own check() would.
    """
    if isinstance(storage, LocalStorage):
        if not storage.root.is_dir():
            raise StorageError(f"storage directory {storage.root} does not exist")
        return
    storage.check()


def check_vendor_submissions(
    jobs: Iterable[Job], submissions: Mapping[str, int]
) -> list[Violation]:
    """No job was submitted to vendors more often than it counted attempts."""
    return [
        Violation("vendor_submissions", job.id, f"{submissions[job.id]} > {job.attempts}")
        for job in jobs
        if submissions.get(job.id, 0) > job.attempts
    ]


def audit(
    session: Session,
    storage: Storage,
    *,
    job_ids: Sequence[str] | None = None,
    receipts: Iterable[Receipt] | None = None,
    vendor_submissions: Mapping[str, int] | None = None,
    require_terminal: bool = True,
) -> list[Violation]:
    """Run every check that has what it needs; an empty list means all invariants hold."""
    jobs = _jobs(session, job_ids)
    violations = check_terminal(jobs) if require_terminal else []
    violations += check_terminal_events(session, jobs)
    violations += check_outputs(jobs, storage)
    if receipts is not None:
        violations += check_deliveries(session, jobs, receipts)
    if vendor_submissions is not None:
        violations += check_vendor_submissions(jobs, vendor_submissions)
    return violations
