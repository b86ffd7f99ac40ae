"""Which vendor a job's next attempt goes to.

The route is the job's pin, else the model's ordered provider list (configurable per
model), limited to vendors configured here. Among those, vendors cooling down are
skipped, and the vendor this job has failed on least goes first (route order breaks
ties) — so a 503 from the first vendor moves the job to the second at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from editqueue.catalog import resolve_model
from editqueue.config import Settings


@dataclass(frozen=True)
class Choice:
    """The vendor to try now, or how long to wait before any is usable."""

    provider: str | None
    wait: float = 0.0


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
    if pin and pin != "sandbox":
        candidates: Sequence[str] = [pin]
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
