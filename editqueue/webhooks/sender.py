"""One signed POST to a webhook receiver, and what it gave; no database here.

The client passed in must be the SSRF-guarded one (`netguard.guarded_client`): it checks
the address it actually connects to. `check_url` runs first as well so that a refused
URL fails before any socket opens, with a message that names the reason.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from editqueue.infra import netguard
from editqueue.webhooks.signing import sign

RESPONSE_BODY_LIMIT = 1024
USER_AGENT = "editqueue-webhooks/1"
# Retry-After beyond a day is treated as a day: the schedule must still end.
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True)
class AttemptResult:
    """What one POST to a receiver gave.

    `permanent` marks failures that no retry can fix (a refused address, 410 Gone).
    """

    ok: bool
    status_code: int | None
    response_ms: int
    body: str | None
    error: str | None
    retry_after: float | None = None
    permanent: bool = False


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _read_head(response: httpx.Response, deadline: float) -> str:
    """The first RESPONSE_BODY_LIMIT bytes of the body; the rest is never read."""
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk
        # A receiver trickling an endless body must not hold the attempt past its timeout.
        if len(kept) >= RESPONSE_BODY_LIMIT or time.monotonic() > deadline:
            break
    return kept[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")


def _outcome(response: httpx.Response, body: str, started: float) -> AttemptResult:
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if 200 <= status < 300:
        return AttemptResult(True, status, _ms(started), body, None)
    if 300 <= status < 400:
        error = f"HTTP {status}: redirects are not followed"
    elif status == 410:
        return AttemptResult(
            False, status, _ms(started), body, "HTTP 410: the receiver is gone", permanent=True
        )
    else:
        error = f"HTTP {status}"
    return AttemptResult(False, status, _ms(started), body, error, retry_after)


def post_signed(
    client: httpx.Client,
    url: str,
    *,
    event_id: str,
    payload: str,
    secrets: Sequence[str],
    allowed: Sequence[netguard.Network],
    timeout: float,
) -> AttemptResult:
    """POST one signed delivery; never raises for receiver or network trouble."""
    started = time.monotonic()
    try:
        netguard.check_url(url, allowed)
        timestamp = int(time.time())
        body = payload.encode()
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secrets, event_id, timestamp, body),
            },
            timeout=timeout,
        )
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            text = _read_head(response, started + timeout)
        finally:
            response.close()
    except netguard.UnresolvableHost as exc:
        # DNS trouble may pass; a temporary failure is retried like any network error.
        return AttemptResult(False, None, _ms(started), None, str(exc), permanent=not exc.temporary)
    except netguard.UnsafeURL as exc:
        return AttemptResult(False, None, _ms(started), None, f"refused: {exc}", permanent=True)
    except httpx.TimeoutException:
        return AttemptResult(False, None, _ms(started), None, f"timed out after {timeout:g}s")
    except httpx.HTTPError as exc:
        return AttemptResult(False, None, _ms(started), None, f"{type(exc).__name__}: {exc}")
    return _outcome(response, text, started)
