"""Lease renewal for the job steps this process is working on.

A step owns its job while the row's `lease_id` is the step's own token and its
`next_poll_at` (the lease's end) is in the future; the sweep hands out a step whose lease
ran out. One daemon thread per process renews every lease the process holds, in one
UPDATE, every quarter lease: a slow vendor call keeps its job however long it takes, and
a dead process's steps come free one lease after its last renewal.

It is also the steps' time limit. Celery's time limits never fire in the threads pool the
worker runs (editqueue/tasknames.py), and a thread cannot be killed; so a step that holds
its lease past `time_limit` (a hung call that no timeout caught) stops being renewed. The
sweep hands its job to another step one lease later, and the stuck step, should it ever
return, changes nothing: its transitions require the lease it no longer holds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.db import affected_rows

log = logging.getLogger(__name__)

# SKIP LOCKED: a row locked right now is mid-transition by its own step (or by a
# terminal transition); waiting for it would only delay every other renewal.
_RENEW = text(
    "UPDATE jobs SET next_poll_at = now() + make_interval(secs => :lease)"
    " FROM (SELECT j.id FROM jobs j"
    "   JOIN unnest(CAST(:ids AS text[]), CAST(:owners AS text[])) AS held(id, owner)"
    "     ON j.id = held.id AND j.lease_id = held.owner"
    "   WHERE j.status = 'running' ORDER BY j.id FOR UPDATE OF j SKIP LOCKED) AS mine"
    " WHERE jobs.id = mine.id"
)


class Heartbeat:
    """The leases this process holds, renewed on a background thread started on first use."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        lease_seconds: float,
        *,
        interval: float | None = None,
        time_limit: float | None = None,
    ) -> None:
        self._sessions = sessions
        self._lease = lease_seconds
        self.interval = interval if interval is not None else lease_seconds / 4
        self._time_limit = time_limit
        self._held: dict[str, tuple[str, float]] = {}  # owner token → (job id, held since)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def step(self) -> Iterator[StepLease]:
        """Scope of one step: whatever lease it takes (`StepLease.hold`) ends with it."""
        lease = StepLease(self)
        try:
            yield lease
        finally:
            lease.release()

    def held(self) -> int:
        """Leases currently renewed by this process."""
        with self._lock:
            return len(self._held)

    def renew(self) -> int:
        """Extend every held lease now; returns how many rows were renewed."""
        with self._lock:
            self._drop_overrun()
            owners = list(self._held)
            ids = [self._held[o][0] for o in owners]
        if not owners:
            return 0
        with self._sessions() as session, session.begin():
            result = session.execute(_RENEW, {"ids": ids, "owners": owners, "lease": self._lease})
        return affected_rows(result)

    def _drop_overrun(self) -> None:
        if self._time_limit is None:
            return
        now = time.monotonic()
        for owner, (job_id, since) in list(self._held.items()):
            if now - since > self._time_limit:
                del self._held[owner]
                log.error(
                    "job.step.time_limit",
                    extra=logs.fields(job_id=job_id, seconds=round(now - since)),
                )

    def _add(self, owner: str, job_id: str) -> None:
        with self._lock:
            self._held[owner] = (job_id, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="lease-heartbeat", daemon=True
                )
                self._thread.start()

    def _remove(self, owner: str) -> None:
        with self._lock:
            self._held.pop(owner, None)

    def _serve(self) -> None:
        stop = threading.Event()  # never set: the thread lives as long as the process
        while not stop.wait(self.interval):
            try:
                self.renew()
            except Exception:  # a database blip must not end renewals for good
                log.exception("job.lease.renew_failed")


class StepLease:
    """The lease of one running step, renewed until the step ends."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._heartbeat = heartbeat
        self._owner: str | None = None

    def hold(self, job_id: str, owner: str | None) -> None:
        """Renew `job_id`'s lease while its `lease_id` is still `owner` (the claim's token)."""
        if owner is None:
            return
        self.release()
        self._owner = owner
        self._heartbeat._add(owner, job_id)

    def release(self) -> None:
        """Stop renewing (the step ended or handed the job on)."""
        if self._owner is not None:
            self._heartbeat._remove(self._owner)
            self._owner = None
