"""Percentiles, latency summaries and across-run spreads (no numpy needed)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SLOW_MS = 250.0  # a request slower than this counts as "slow" in every report


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation (numpy's default).

    ``values`` need not be sorted; an empty sequence gives NaN.
    """
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one kind of request, in milliseconds."""

    count: int
    errors: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    slow: int  # requests over SLOW_MS

    @classmethod
    def of(cls, samples_ms: Sequence[float], errors: int = 0) -> LatencyStats:
        if not samples_ms:
            nan = math.nan
            return cls(0, errors, nan, nan, nan, nan, nan, 0)
        return cls(
            count=len(samples_ms), errors=errors,
            p50=percentile(samples_ms, 50), p90=percentile(samples_ms, 90),
            p99=percentile(samples_ms, 99), max=max(samples_ms),
            mean=statistics.fmean(samples_ms), slow=sum(1 for s in samples_ms if s > SLOW_MS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count, "errors": self.errors, "p50_ms": _round(self.p50),
            "p90_ms": _round(self.p90), "p99_ms": _round(self.p99), "max_ms": _round(self.max),
            "mean_ms": _round(self.mean), f"over_{SLOW_MS:.0f}ms": self.slow,
        }


def spread(values: Iterable[float | None]) -> dict[str, float | None]:
    """Median, min and max of the defined values (None when there are none)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {
        "median": _round(statistics.median(present), 3),
        "min": _round(min(present), 3),
        "max": _round(max(present), 3),
    }


def dig(data: Any, path: str) -> Any:
    """``dig(run, "latency.flood.list.p99_ms")``: None when any step is missing."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
