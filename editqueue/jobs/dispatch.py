"""Fair dispatch: which queued jobs workers get next.

Jobs wait in PostgreSQL, not in the broker. The dispatcher hands out at most
`window` jobs that workers have not started yet, fewest-in-flight first across tenants
(a tenant's k-th waiting job ranks as its in-flight count + k, so a tenant with nothing
running goes before one with a thousand jobs out), and never lets a tenant have more
than its cap of jobs in flight. So a tenant's 50,000-job backlog sits in the
table, and another tenant's single job is at most one short window away from a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import tasknames
from editqueue.db import affected_rows

# One dispatcher at a time; concurrent doorbells simply find the lock taken.
_LOCK_KEY = 0x65646974  # "edit"

_PICK = text(
    """
    WITH inflight AS (
        SELECT tenant_id, count(*) AS n FROM jobs
        WHERE status = 'running' OR (status = 'queued' AND dispatched_at IS NOT NULL)
        GROUP BY tenant_id
    ), waiting AS (
        SELECT DISTINCT tenant_id FROM jobs WHERE status = 'queued' AND dispatched_at IS NULL
    )
    SELECT pick.id
    FROM waiting w
    JOIN tenants t ON t.id = w.tenant_id
    LEFT JOIN inflight f ON f.tenant_id = w.tenant_id
    CROSS JOIN LATERAL (
        SELECT j.id, row_number() OVER (ORDER BY j.id) AS turn
        FROM jobs j
        WHERE j.tenant_id = w.tenant_id AND j.status = 'queued' AND j.dispatched_at IS NULL
        ORDER BY j.id
        LIMIT greatest(0, least(:room, coalesce(t.max_running_jobs, :cap) - coalesce(f.n, 0)))
    ) pick
    ORDER BY coalesce(f.n, 0) + pick.turn, pick.id
    LIMIT :room
    """
)


def dispatch(session: Session, *, window: int, default_cap: int) -> list[str]:
    """Mark the next fair share of queued jobs dispatched; returns their ids to publish."""
    locked = session.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
    ).scalar_one()
    if not locked:
        return []
    waiting_for_workers = session.execute(
        text("SELECT count(*) FROM jobs WHERE status = 'queued' AND dispatched_at IS NOT NULL")
    ).scalar_one()
    room = window - waiting_for_workers
    if room <= 0:
        return []
    ids = list(session.scalars(_PICK, {"room": room, "cap": default_cap}))
    if ids:
        session.execute(
            text("UPDATE jobs SET dispatched_at = now() WHERE id = ANY(:ids)"), {"ids": ids}
        )
    return ids


def dispatch_and_publish(
    sessions: sessionmaker[Session],
    publish: Callable[[str, list[Any]], None],
    *,
    window: int,
    default_cap: int,
) -> int:
    """Dispatch the next fair share and publish a submit for each; returns how many went out.

    A job whose message could not be published (the broker failed mid-way) is given back
    to the dispatcher, so it goes out on a later run instead of waiting for `release_stale`.
    """
    with sessions() as session, session.begin():
        ids = dispatch(session, window=window, default_cap=default_cap)
    sent = 0
    try:
        for job_id in ids:
            publish(tasknames.SUBMIT_JOB, [job_id])
            sent += 1
    finally:
        if sent < len(ids):
            with sessions() as session, session.begin():
                undispatch(session, ids[sent:])
    return sent


def undispatch(session: Session, job_ids: list[str]) -> None:
    """Give jobs back to the dispatcher (their messages could not be published)."""
    session.execute(
        text("UPDATE jobs SET dispatched_at = NULL WHERE id = ANY(:ids) AND status = 'queued'"),
        {"ids": job_ids},
    )


def release_stale(session: Session, *, older_than: float, limit: int = 1000) -> int:
    """Jobs dispatched long ago but never started (message lost): dispatch them again."""
    result = session.execute(
        text(
            "UPDATE jobs SET dispatched_at = NULL WHERE id IN ("
            " SELECT id FROM jobs WHERE status = 'queued'"
            " AND dispatched_at < now() - make_interval(secs => :age)"
            " LIMIT :limit FOR UPDATE SKIP LOCKED)"
        ),
        {"age": older_than, "limit": limit},
    )
    return affected_rows(result)
