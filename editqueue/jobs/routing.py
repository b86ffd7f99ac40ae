"""Which vendor a job's next attempt goes to, and whether there is a next attempt.

The route is the job's pin, else the model's ordered provider list (configurable per
model), limited to vendors configured here. Among those, vendors cooling down are
skipped, and the vendor this job has failed on least goes first (route order breaks
ties) — so a 503 from the first vendor moves the job to the second at once.

Retry policy (the budget itself, `max_attempts`, is counted by the pipeline): a 429
costs nothing and the job waits; a transient failure (the adapter maps it retryable)
may be tried again on any vendor of the route; any other vendor failure moves the job
to another vendor, never back to the one that reported it; a refusal of the request
itself (invalid, moderated) ends the job, since every vendor would refuse it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from editqueue.catalog import resolve_model
from editqueue.config import Settings
from editqueue.providers.base import ProviderError, RateLimited, RequestRejected

# The pin that names no vendor: the vendor emulators (sandbox/) stand in for every vendor.
SANDBOX_PIN = "sandbox"


@dataclass(frozen=True)
class Choice:
    """The vendor to try now, or how long to wait before any is usable."""

    provider: str | None
    wait: float = 0.0


def vendor_pin(pin: str | None) -> str | None:
    """The vendor a `provider` pin names, or None when the job is routed.

    The API accepts `provider: "sandbox"` as a pin, but no adapter is called that: a server
    using the sandbox points each vendor's base URL at its emulator (editqueue standalone),
    so "sandbox" asks for the emulated vendors, i.e. the model's normal route. Intake
    therefore skips its per-vendor checks for it, and routing treats it as no pin.
    """
    if not pin or pin == SANDBOX_PIN:
        return None
    return pin


def route(
    model_id: str,
    pin: str | None,
    settings: Settings,
    available: Callable[[str], bool],
) -> list[str]:
    """The vendors this job may use, in order of preference."""
    model = resolve_model(model_id)
    if model is None:
        return []
    pinned = vendor_pin(pin)
    if pinned is not None:
        candidates: Sequence[str] = [pinned]
    else:
        candidates = settings.routes.get(model.id) or model.providers
    configured = settings.configured_providers()
    return [p for p in candidates if p in configured and available(p)]


def failures_by_provider(attempts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How often each vendor failed this job (rate limiting is not a failure)."""
    counts: dict[str, int] = {}
    for attempt in attempts:
        if attempt.get("outcome") == "failed" and attempt.get("provider"):
            counts[attempt["provider"]] = counts.get(attempt["provider"], 0) + 1
    return counts


def choose(
    candidates: Sequence[str],
    attempts: Sequence[Mapping[str, Any]],
    cooldown_left: Callable[[str], float],
) -> Choice:
    """Pick the vendor for the next attempt."""
    if not candidates:
        return Choice(None)
    cooling = {p: cooldown_left(p) for p in candidates}
    ready = [p for p in candidates if cooling[p] <= 0]
    if not ready:
        return Choice(None, wait=min(cooling.values()))
    failures = failures_by_provider(attempts)
    order = {p: i for i, p in enumerate(candidates)}
    best = min(ready, key=lambda p: (failures.get(p, 0), order[p]))
    return Choice(best)


RetryScope = Literal["free", "any", "elsewhere", "never"]


def retry_scope(error: ProviderError) -> RetryScope:
    """How a vendor failure may be retried: `free` (a 429: again, without using budget),
    `any` (transient: any vendor of the route), `elsewhere` (another vendor only), `never`
    (a refusal of the request itself: another vendor would refuse it the same way)."""
    if isinstance(error, RateLimited):
        return "free"
    if error.retryable:
        return "any"
    if isinstance(error, RequestRejected):
        return "never"
    return "elsewhere"


def eligible(candidates: Sequence[str], attempts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The candidates this job may still go to: not those that failed it for good."""
    refused = {
        a.get("provider")
        for a in attempts
        if a.get("outcome") == "failed" and a.get("retryable") is False
    }
    return [p for p in candidates if p not in refused]
