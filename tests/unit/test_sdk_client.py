"""The SDK's retry policy, error mapping and request shapes, over httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from editqueue.client import (
    Client,
    IdempotencyKeyReused,
    JobFinished,
    NotFound,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
)
from editqueue.client._transport import Request, RetryPolicy
from editqueue.client.resources.jobs import create_request


def problem(
    status: int, code: str, headers: dict[str, str] | None = None, **extra
) -> httpx.Response:
    body = {"type": "t", "title": "x", "status": status, "detail": "d", "code": code, **extra}
    return httpx.Response(status, json=body, headers=headers)


def client_answering(*answers: httpx.Response | Exception, **kwargs) -> tuple[Client, list]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    kwargs.setdefault("max_retry_wait", 0.01)
    sdk = Client("http://api.test", "eq_key", transport=httpx.MockTransport(handle), **kwargs)
    return sdk, seen


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (problem(404, "not_found"), NotFound),
        (problem(409, "job_finished"), JobFinished),
        (problem(422, "idempotency_key_reused"), IdempotencyKeyReused),
        (problem(500, "internal_error"), ServerError),
    ],
)
def test_problems_map_to_exceptions(answer: httpx.Response, error: type) -> None:
    sdk, _ = client_answering(answer)
    with pytest.raises(error) as info:
        sdk.jobs.get("job_1")
    assert info.value.status == answer.status_code and info.value.detail == "d"


def test_validation_failed_has_field_paths() -> None:
    errors = [{"field": "jobs[17].prompt", "message": "too long"}]
    sdk, _ = client_answering(problem(422, "invalid_request", errors=errors))
    with pytest.raises(ValidationFailed) as info:
        sdk.batches.create(jobs=[{"prompt": "p"}])
    assert info.value.fields == {"jobs[17].prompt": "too long"}
    assert "jobs[17].prompt: too long" in str(info.value)


def test_429_waits_then_succeeds_but_a_long_retry_after_is_raised_at_once() -> None:
    page = httpx.Response(200, json={"data": [], "next_cursor": None})
    limited = problem(429, "rate_limited", {"Retry-After": "0"})
    sdk, seen = client_answering(limited, limited, page)
    assert list(sdk.jobs.list()) == []
    assert len(seen) == 3

    sdk, seen = client_answering(problem(429, "rate_limited", {"Retry-After": "30"}))
    with pytest.raises(RateLimited) as info:
        list(sdk.jobs.list())
    assert info.value.retry_after == 30.0 and len(seen) == 1


def test_retries_are_bounded() -> None:
    limited = problem(429, "rate_limited", {"Retry-After": "0"})
    sdk, seen = client_answering(*[limited] * 3, max_retries=2)
    with pytest.raises(RateLimited):
        sdk.jobs.get("job_1")
    assert len(seen) == 3


def test_503_and_lost_connections_are_retried_only_when_repeating_is_harmless() -> None:
    policy = RetryPolicy(max_retries=3, max_retry_wait=1.0)
    busy = httpx.Response(503)
    assert policy.delay(Request("GET", "/v1/jobs"), busy, 0) is not None
    assert policy.delay(Request("POST", "/v1/jobs/j/cancel"), busy, 0) is None
    keyed = Request("POST", "/v1/jobs", headers={"Idempotency-Key": "k"})
    assert policy.delay(keyed, busy, 0) is not None
    assert policy.delay(keyed, None, 0) is not None  # no answer, but the key makes it safe
    assert policy.delay(Request("POST", "/v1/jobs/j/cancel"), None, 0) is None

    assert policy.delay(Request("POST", "/v1/jobs/j/cancel"), None, 0, sent=False) is not None

    refused = httpx.ConnectError("refused")
    sdk, seen = client_answering(refused, refused, problem(404, "not_found"))
    with pytest.raises(NotFound):  # two refusals retried, then the real answer
        sdk.jobs.cancel("job_1")
    assert len(seen) == 3
    sdk, seen = client_answering(httpx.ReadError("reset"))
    with pytest.raises(Unreachable, match=r"cannot reach the API at http://api\.test"):
        sdk.jobs.cancel("job_1")  # it may have been cancelled: not repeated
    assert len(seen) == 1


def test_creates_carry_a_fresh_idempotency_key_unless_given() -> None:
    first = create_request("m", "p", None, None, None, {})
    second = create_request("m", "p", None, None, None, {})
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    assert create_request("m", "p", None, "mine", 5, {}).headers == {
        "Idempotency-Key": "mine",
        "Prefer": "wait=5",
    }


def test_files_make_a_multipart_request_with_metadata_fields() -> None:
    request = create_request(
        "m", "p", [b"\x89PNG", "https://x/a.png"], None, None, {"metadata": {"run": "7"}, "seed": 3}
    )
    assert request.json is None and request.files is not None
    assert request.data == {
        "model": "m",
        "prompt": "p",
        "metadata[run]": "7",
        "seed": "3",
        "images": ["https://x/a.png"],
    }
    plain = create_request("m", "p", ["https://x/a.png"], None, None, {"seed": 3})
    assert plain.files is None
    assert (
        json.dumps(plain.json)
        == '{"model": "m", "prompt": "p", "seed": 3, "images": ["https://x/a.png"]}'
    )
