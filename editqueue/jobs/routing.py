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

Strategies (`ROUTING_STRATEGIES`; a job's `routing` field, else EDITQUEUE_ROUTING for its
model, else `weighted` when EDITQUEUE_ROUTES gives the model weights, else `ordered`) only
order the candidates; `choose` still puts the vendors that failed this job last and skips
those cooling down, so failover works the same under every strategy:

- `ordered`: the route order.
- `cheapest`: by the price table (editqueue.spend.prices) for the job's images; vendors
  with an unknown price after every priced one, in route order; ties in route order.
- `fastest`: by the median duration of the vendor's recent successful tasks (creation to
  result; the last LATENCY_SAMPLES within LATENCY_WINDOW, shared through Redis). A vendor
  with fewer than MIN_LATENCY_SAMPLES is unmeasured: while every candidate is, the route
  order applies; otherwise one job in EXPLORE_EVERY (at random) tries the unmeasured
  vendors first, so a new vendor, or one whose samples aged out, gets measured.
- `least_busy`: most free concurrency slots first (max_concurrent minus slots held); a
  vendor without a limit counts as the most free; ties in route order.
- `weighted`: a random draw by the route's weights (equal weights when none are
  configured); the next vendors by further draws among the rest, weight 0 last.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from editqueue.catalog import resolve_model
from editqueue.config import ROUTING_STRATEGIES, Settings
from editqueue.providers.base import ProviderError, RateLimited, RequestRejected
from editqueue.providers.limits import Limits
from editqueue.spend import prices

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


# -- strategies -------------------------------------------------------------------------------

# Fewer successes than this in the window: the vendor's speed is not known yet.
MIN_LATENCY_SAMPLES = 3
# One job in this many tries unmeasured vendors first under `fastest`.
EXPLORE_EVERY = 10


@dataclass(frozen=True)
class Ranking:
    """Candidates in a strategy's order of preference, with what each was judged by."""

    strategy: str
    order: list[str]
    facts: dict[str, str] = field(default_factory=dict)  # vendor → "0.03 USD/image", …
    note: str = ""  # why the order is what it is when no fact decided it

    def record(self, chosen: str, at: dt.datetime | None = None) -> dict[str, Any]:
        """`usage.routing`: the strategy, the vendor, why, and when it was chosen."""
        return {
            "strategy": self.strategy,
            "provider": chosen,
            "reason": self.reason(chosen),
            "at": _iso(at or dt.datetime.now(dt.UTC)),
        }

    def reason(self, chosen: str) -> str:
        """E.g. "cheapest: 0.03 USD/image vs ark 0.04 USD/image"."""
        head = f"{self.strategy}: "
        if self.note or not self.facts.get(chosen):
            head += self.note or "route order"
        else:
            others = [f"{p} {self.facts[p]}" for p in self.order if p != chosen and p in self.facts]
            head += self.facts[chosen] + (" vs " + ", ".join(others) if others else "")
        ahead = self.order[: self.order.index(chosen)] if chosen in self.order else []
        if ahead:
            head += "; passed over " + ", ".join(ahead) + " (failed this job, cooling or full)"
        return head


def strategy_for(settings: Settings, model_id: str, requested: str | None) -> str:
    """The strategy a job routes by: its own, else its model's configured one."""
    if requested in ROUTING_STRATEGIES:
        return requested
    model = resolve_model(model_id)
    name = model.id if model is not None else model_id
    configured = settings.routing.get(name) or settings.routing.get(model_id)
    if configured:
        return configured
    return "weighted" if name in settings.route_weights else "ordered"


def rank(
    strategy: str,
    candidates: Sequence[str],
    *,
    settings: Settings,
    limits: Limits,
    model_id: str,
    params: Mapping[str, Any] | None = None,
    rng: random.Random | None = None,
) -> Ranking:
    """Order the candidates by the strategy, reading prices, latencies or slots as needed."""
    rng = rng or random.Random()
    candidates = list(candidates)
    if strategy == "cheapest":
        unit = _unit_prices(settings, model_id, params or {}, candidates)
        return by_price(candidates, unit, settings.currency)
    if strategy == "fastest":
        return by_latency(candidates, limits.latency_samples(candidates), rng)
    if strategy == "least_busy":
        return by_free_slots(candidates, limits.slot_usage(candidates))
    if strategy == "weighted":
        model = resolve_model(model_id)
        weights = settings.route_weights.get(model.id if model else model_id, {})
        return by_weight(candidates, weights, rng)
    return Ranking("ordered", candidates, note="route order")


def _unit_prices(
    settings: Settings, model_id: str, params: Mapping[str, Any], candidates: Sequence[str]
) -> dict[str, Decimal | None]:
    """What one output image of this job costs at each candidate (None: unknown)."""
    megapixels = prices.requested_megapixels(params)
    return {p: prices.estimate(settings, p, model_id, 1, megapixels) for p in candidates}


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f")


def by_price(
    candidates: Sequence[str], unit_prices: Mapping[str, Decimal | None], currency: str = "USD"
) -> Ranking:
    """`cheapest`: priced vendors by price, then unpriced ones; ties in route order."""
    position = {p: i for i, p in enumerate(candidates)}
    priced = sorted(
        (p for p in candidates if unit_prices.get(p) is not None),
        key=lambda p: (unit_prices[p], position[p]),
    )
    unpriced = [p for p in candidates if unit_prices.get(p) is None]
    facts = {p: f"{_amount(unit_prices[p])} {currency}/image" for p in priced}  # type: ignore[arg-type]
    facts.update({p: "price unknown" for p in unpriced})
    note = "no vendor has a known price; route order" if not priced else ""
    return Ranking("cheapest", [*priced, *unpriced], facts, note)


def p50(samples: Sequence[float]) -> float | None:
    """The median of a vendor's samples, or None while it is unmeasured."""
    if len(samples) < MIN_LATENCY_SAMPLES:
        return None
    return float(statistics.median(samples))


def by_latency(
    candidates: Sequence[str], samples: Mapping[str, Sequence[float]], rng: random.Random
) -> Ranking:
    """`fastest`: lowest p50 first; unmeasured vendors get explored (see the module doc)."""
    medians = {p: p50(samples.get(p, ())) for p in candidates}
    measured = sorted(
        (p for p in candidates if medians[p] is not None),
        key=lambda p: medians[p],  # type: ignore[arg-type, return-value]
    )
    unmeasured = [p for p in candidates if medians[p] is None]
    facts = {p: f"p50 {medians[p]:.3f} s" for p in measured}
    facts.update({p: "unmeasured" for p in unmeasured})
    if not measured:
        return Ranking("fastest", list(candidates), facts, "no vendor measured yet; route order")
    if unmeasured and rng.randrange(EXPLORE_EVERY) == 0:
        note = "exploring unmeasured vendors"
        return Ranking("fastest", [*unmeasured, *measured], facts, note)
    return Ranking("fastest", [*measured, *unmeasured], facts)


def by_free_slots(
    candidates: Sequence[str], usage: Mapping[str, tuple[int, int | None]]
) -> Ranking:
    """`least_busy`: most free slots first, unlimited vendors before any limited one."""
    position = {p: i for i, p in enumerate(candidates)}

    def free(p: str) -> float:
        used, limit = usage.get(p, (0, None))
        return float("inf") if not limit else float(max(0, limit - used))

    order = sorted(candidates, key=lambda p: (-free(p), position[p]))
    facts = {}
    for p in candidates:
        used, limit = usage.get(p, (0, None))
        facts[p] = "unlimited" if not limit else f"{max(0, limit - used)} of {limit} slots free"
    return Ranking("least_busy", order, facts)


def by_weight(candidates: Sequence[str], weights: Mapping[str, int], rng: random.Random) -> Ranking:
    """`weighted`: draw vendors one after another in proportion to their weights."""
    given = {p: weights.get(p, 0) for p in candidates} if weights else dict.fromkeys(candidates, 1)
    pool = [p for p in candidates if given[p] > 0]
    total = sum(given[p] for p in pool)
    facts = {p: f"weight {given[p]} of {total}" for p in candidates}
    order: list[str] = []
    while pool:
        pick = rng.choices(pool, weights=[given[p] for p in pool])[0]
        order.append(pick)
        pool.remove(pick)
    order += [p for p in candidates if p not in order]
    return Ranking("weighted", order, facts)


def task_seconds(usage: Mapping[str, Any] | None, now: dt.datetime | None = None) -> float | None:
    """Seconds since the vendor of `usage.routing` was chosen (None when not recorded)."""
    record = (usage or {}).get("routing") if isinstance(usage, Mapping) else None
    at = record.get("at") if isinstance(record, Mapping) else None
    if not isinstance(at, str):
        return None
    try:
        started = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, ((now or dt.datetime.now(dt.UTC)) - started).total_seconds())


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
