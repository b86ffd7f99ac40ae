"""Pure webhook rules: subscriptions, secrets in force, rotation, Retry-After, the fence."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest
import standardwebhooks

from editqueue.cli.listener import describe_subject
from editqueue.models import Tenant, WebhookEndpoint
from editqueue.webhooks import limits as webhook_limits
from editqueue.webhooks.limits import QUICK_SECONDS, TargetLimiter
from editqueue.webhooks.secrets import (
    endpoint_secrets,
    rotate_endpoint_secret,
    rotate_tenant_secret,
)
from editqueue.webhooks.sender import RESPONSE_BODY_LIMIT, parse_retry_after, post_signed
from editqueue.webhooks.signing import endpoint_wants, generate_secret, secrets_in_force, sign

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_an_empty_subscription_means_everything_but_opt_in_types() -> None:
    assert endpoint_wants([], "job.succeeded")
    assert endpoint_wants([], "batch.completed")
    assert endpoint_wants([], "webhook_endpoint.disabled")
    assert not endpoint_wants([], "job.started")
    assert endpoint_wants(["job.started"], "job.started")
    assert not endpoint_wants(["job.failed"], "job.succeeded")


def test_the_previous_secret_signs_only_during_its_overlap() -> None:
    later = NOW + dt.timedelta(hours=1)
    assert secrets_in_force("new", "old", later, NOW) == ["new", "old"]
    assert secrets_in_force("new", "old", NOW, NOW) == ["new"]
    assert secrets_in_force("new", None, later, NOW) == ["new"]


def test_rotation_keeps_the_old_secret_for_the_given_overlap() -> None:
    endpoint = WebhookEndpoint(secret=generate_secret())
    old = endpoint.secret
    new = rotate_endpoint_secret(endpoint, NOW, overlap=86_400)
    assert new != old and new.startswith("whsec_")
    assert endpoint.previous_secret_until == NOW + dt.timedelta(days=1)
    assert endpoint_secrets(endpoint, NOW + dt.timedelta(hours=23)) == [new, old]
    assert endpoint_secrets(endpoint, NOW + dt.timedelta(hours=25)) == [new]

    tenant = Tenant(webhook_secret=generate_secret())
    rotate_tenant_secret(tenant, NOW, overlap=0)
    assert tenant.previous_webhook_secret_until == NOW


def test_both_signatures_verify_with_the_reference_library() -> None:
    endpoint = WebhookEndpoint(secret=generate_secret())
    old = endpoint.secret
    new = rotate_endpoint_secret(endpoint, dt.datetime.now(dt.UTC), overlap=86_400)
    body = json.dumps({"type": "job.succeeded", "timestamp": "", "data": {}}).encode()
    ts = int(time.time())
    signature = sign(endpoint_secrets(endpoint, dt.datetime.now(dt.UTC)), "evt_1", ts, body)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(ts), "webhook-signature": signature}
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_the_fence_is_a_quarter_of_the_threads_unless_configured() -> None:
    # Bad values of the webhook knobs stop settings loading: tests/unit/test_config.py.
    assert webhook_limits.max_in_flight(16) == 4
    assert webhook_limits.max_in_flight(2) == 1
    assert webhook_limits.max_in_flight(16, 3) == 3


def test_retry_after_takes_seconds_or_a_date_and_is_capped() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("99999999") == 86_400.0
    date = "Thu, 01 Jan 2026 00:02:00 GMT"
    assert parse_retry_after(date, now=NOW) == 120.0


def test_the_fence_caps_a_target_and_waits_only_for_quick_attempts() -> None:
    limiter = TargetLimiter(1, quick_limit=2)
    token = limiter.try_acquire("a")
    assert token is not None
    started = time.monotonic()
    assert limiter.try_acquire("a") is None  # waited for a quick slot, then gave up
    assert time.monotonic() - started >= QUICK_SECONDS * 0.9
    assert limiter.try_acquire("b") is not None  # other targets are not affected
    # The attempt in flight is slow now: no more waiting, and a back-off of one timeout.
    started = time.monotonic()
    assert limiter.try_acquire("a") is None
    assert time.monotonic() - started < QUICK_SECONDS / 2
    assert limiter.busy_delay("a", timeout=15) == 15
    limiter.release("a", token)
    assert limiter.in_flight("a") == 0


def test_a_target_proven_quick_gets_the_larger_cap() -> None:
    limiter = TargetLimiter(1, quick_limit=2)
    with limiter.slot("a") as first:
        assert first
    with limiter.slot("a") as first, limiter.slot("a") as second:
        assert first and second and limiter.in_flight("a") == 2
    assert limiter.busy_delay("a", timeout=15) == 1.0


def _client(handler) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(transport=httpx.MockTransport(handler))


def _post(client: httpx.Client):  # type: ignore[no-untyped-def]
    return post_signed(
        client,
        "https://93.184.216.34/hook",  # a public literal: no DNS lookup in a unit test
        event_id="evt_1",
        payload="{}",
        secrets=[generate_secret()],
        allowed=(),
        timeout=1.0,
    )


@pytest.mark.parametrize(
    ("status", "headers", "ok", "permanent", "error"),
    [
        (204, {}, True, False, None),
        (
            302,
            {"location": "http://10.0.0.1/"},
            False,
            False,
            "HTTP 302: redirects are not followed",
        ),
        (410, {}, False, True, "HTTP 410: the receiver is gone"),
        (503, {"retry-after": "7"}, False, False, "HTTP 503"),
    ],
)
def test_post_signed_outcomes(
    status: int, headers: dict[str, str], ok: bool, permanent: bool, error: str | None
) -> None:
    result = _post(
        _client(lambda request: httpx.Response(status, headers=headers, text="x" * 5000))
    )
    assert (result.ok, result.permanent, result.error, result.status_code) == (
        ok,
        permanent,
        error,
        status,
    )
    assert result.body is not None and len(result.body) == RESPONSE_BODY_LIMIT
    assert result.retry_after == (7.0 if status == 503 else None)


def test_post_signed_sends_standard_webhooks_headers_and_reports_timeouts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    result = _post(_client(handler))
    assert not result.ok and not result.permanent and result.error == "timed out after 1s"
    [request] = seen
    assert request.headers["webhook-id"] == "evt_1"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert int(request.headers["webhook-timestamp"]) == pytest.approx(time.time(), abs=5)


def test_the_listener_names_what_an_event_is_about() -> None:
    job = {"data": {"object": "job", "id": "job_1", "status": "failed"}}
    assert describe_subject(job) == "job=job_1 status=failed"
    batch = {"data": {"object": "batch", "id": "bat_1", "counts": {"succeeded": 2, "total": 3}}}
    assert describe_subject(batch) == "batch=bat_1 succeeded=2/3"
    assert describe_subject([]) == ""
