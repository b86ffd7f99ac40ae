"""Small statistics for benchmark figures: medians and percentiles without numpy."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values, so an empty run reads as a zero figure)."""
    return statistics.median(values) if values else 0.0


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile, `share` in 0–1 (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ratio(ours: float, baseline: float) -> str:
    """Ours as a percentage of the baseline, for the tables."""
    return f"{100 * ours / baseline:.0f} %" if baseline else "n/a"
