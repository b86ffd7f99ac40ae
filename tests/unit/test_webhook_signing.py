"""Standard Webhooks signing, checked against the reference library."""

from __future__ import annotations

import json
import time

import pytest
import standardwebhooks

from editqueue.webhooks.signing import event_body, generate_secret, next_delay, sign, verify


def test_signature_verifies_with_the_standardwebhooks_library() -> None:
    secret = generate_secret()
    body = event_body("job.succeeded", "2026-01-01T00:00:00.000Z", {"id": "job_1"}).encode()
    ts = int(time.time())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret], "evt_1", ts, body),
    }
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    assert payload == json.loads(body)
    assert verify(secret, headers, body)


def test_rotation_sends_both_signatures_and_either_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    ts = int(time.time())
    header = sign([new, old], "evt_2", ts, b"{}")
    assert len(header.split(" ")) == 2
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(ts), "webhook-signature": header}
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(b"{}", headers)


def test_tampered_or_stale_deliveries_fail() -> None:
    secret = generate_secret()
    ts = int(time.time())
    headers = {
        "webhook-id": "evt_3",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret], "evt_3", ts, b'{"a":1}'),
    }
    assert not verify(secret, headers, b'{"a":2}')
    assert not verify(generate_secret(), headers, b'{"a":1}')
    stale = {**headers, "webhook-timestamp": str(ts - 3600)}
    assert not verify(secret, stale, b'{"a":1}')


@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_retry_delay_follows_the_schedule_with_jitter(attempt: int) -> None:
    schedule = (5, 300, 1800, 7200, 18000, 36000, 36000)
    delay = next_delay(schedule, attempt, None)
    assert delay is not None
    assert schedule[attempt - 1] * 0.9 <= delay <= schedule[attempt - 1] * 1.1


def test_retry_after_wins_when_longer_and_the_schedule_ends() -> None:
    assert next_delay((5,), 1, 120.0) == 120.0
    assert next_delay((5, 300), 3, None) is None
