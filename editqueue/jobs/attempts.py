"""A job's attempt log: one entry per vendor attempt, what routing and the retry budget read.

It lives in `jobs.attempt_log`. Rows written before that column existed keep it in
`usage.attempts` (and a job in flight across the upgrade has it there until its next
attempt copies it over), so readers go through `attempt_log` below.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from editqueue.models import Job


def attempt_log(job: Job) -> list[dict[str, Any]]:
    """The job's attempts so far, oldest first (from `usage` for rows of older versions)."""
    if job.attempt_log:
        return list(job.attempt_log)
    usage = job.usage if isinstance(job.usage, dict) else {}
    return list(usage.get("attempts") or [])


def attempt_entry(provider: str | None, outcome: str, attempt: int, **extra: Any) -> dict[str, Any]:
    """One log entry: which vendor, which attempt of the budget, how it ended, and when."""
    at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return {"provider": provider, "attempt": attempt, "outcome": outcome, "at": at, **extra}
