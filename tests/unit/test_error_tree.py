"""The vendor error tree, the public error object, and where a job's attempts are read."""

from __future__ import annotations

import pytest

from editqueue import tasknames
from editqueue.jobs.attempts import attempt_log
from editqueue.jobs.errors import job_error
from editqueue.jobs.routing import vendor_pin
from editqueue.jobs.status import TERMINAL, JobStatus
from editqueue.models import Job
from editqueue.providers.base import (
    BadOutput,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TaskFailed,
    as_task_failure,
)
from editqueue.serialize import public_usage


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("rate_limited", RateLimited),
        ("provider_unavailable", ProviderUnavailable),
        ("timeout", ProviderUnavailable),
        ("invalid_request", RequestRejected),
        ("invalid_image", RequestRejected),
        ("content_rejected", RequestRejected),
        ("provider_error", ProviderError),
        ("internal_error", ProviderError),
    ],
)
def test_an_error_built_from_its_code_has_that_codes_type(code: str, kind: type) -> None:
    error = ProviderError(code, "it failed", provider="ark", retry_after=3.0)  # type: ignore[arg-type]
    assert type(error) is kind
    assert (error.code, error.message, error.retry_after) == (code, "it failed", 3.0)


def test_a_failed_tasks_plain_error_becomes_task_failed_and_keeps_its_fields() -> None:
    plain = ProviderError("provider_error", "boom", provider="kie", provider_code="501")
    failed = as_task_failure(plain)
    assert type(failed) is TaskFailed
    assert failed.as_dict() == plain.as_dict()
    moderated = ProviderError("content_rejected", "nsfw", provider="kie")
    assert as_task_failure(moderated) is moderated
    assert isinstance(BadOutput("provider_error", "no image", provider="ark"), ProviderError)


def test_the_public_error_object_has_every_field_of_the_contract() -> None:
    error = RateLimited("rate_limited", "slow down", provider="vtrix", provider_code="429")
    assert error.as_dict() == {
        "code": "rate_limited",
        "message": "slow down",
        "provider": "vtrix",
        "provider_code": "429",
        "retryable": False,
    }
    assert job_error("timeout", "late") == {
        "code": "timeout",
        "message": "late",
        "provider": None,
        "provider_code": None,
        "retryable": False,
    }


def test_attempts_come_from_the_log_and_from_usage_on_rows_of_older_versions() -> None:
    entry = {"provider": "ark", "attempt": 1, "outcome": "failed"}
    old = Job(usage={"images": 1, "attempts": [entry]}, attempt_log=[])
    assert attempt_log(old) == [entry]
    assert public_usage(old) == {"images": 1, "attempts": [entry]}
    new = Job(usage=None, attempt_log=[entry])
    assert public_usage(new) == {"attempts": [entry]}
    assert public_usage(Job(usage={"provider_task_id": "t1"}, attempt_log=[])) == {
        "provider_task_id": "t1"
    }
    assert public_usage(Job(usage=None, attempt_log=[])) is None


def test_statuses_are_the_plain_strings_and_sandbox_is_no_vendor_pin() -> None:
    assert JobStatus.RUNNING == "running" and f"{JobStatus.FAILED}" == "failed"
    assert set(TERMINAL) == {"succeeded", "failed", "canceled"}
    assert (vendor_pin("sandbox"), vendor_pin(None), vendor_pin("kie")) == (None, None, "kie")


def test_every_beat_task_and_every_named_task_has_a_queue() -> None:
    assert {task for _, task, _ in tasknames.BEAT_SCHEDULE} <= set(tasknames.QUEUES)
    assert tasknames.queue_for(tasknames.SUBMIT_JOB) == "jobs"
    assert tasknames.queue_for("editqueue.unknown") == tasknames.DEFAULT_QUEUE
