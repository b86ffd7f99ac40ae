"""The Job's public `error` object (`schemas.JobError`), built in one place."""

from __future__ import annotations

from typing import Any

# Why a job ended at its deadline; the reaper and a step that finds the deadline passed
# both say it the same way.
DEADLINE_MESSAGE = "the job did not finish before its deadline"


def job_error(
    code: str,
    message: str,
    *,
    provider: str | None = None,
    provider_code: str | None = None,
    retryable: bool = False,
) -> dict[str, Any]:
    """`{"code", "message", "provider", "provider_code", "retryable"}`, as the API spells it."""
    return {
        "code": code,
        "message": message,
        "provider": provider,
        "provider_code": provider_code,
        "retryable": retryable,
    }


def timeout_error(provider: str | None) -> dict[str, Any]:
    """The error of a job that reached its deadline (blaming the vendor it was at, if any)."""
    return job_error("timeout", DEADLINE_MESSAGE, provider=provider)
