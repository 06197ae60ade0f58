"""Cost-growth checks for code that touches untrusted input (no absolute time limits).

A function is "linear enough" when its cost at ``n * factor`` is well below the cost a
quadratic function would show (``factor ** 2`` times as much). Medians of several runs
absorb the noise of a shared machine; the inputs are built before the clock starts.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


MIN_SMALL_SECONDS = 0.002
MAX_SCALE = 16  # the small size grows at most this much


def median_seconds(fn: Callable[[T], object], arg: T, repeat: int = 5) -> float:
    """Median wall time of ``fn(arg)`` over ``repeat`` calls (garbage collection paused,
    so a collection triggered by earlier work does not land in one sample)."""
    samples = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            fn(arg)
            samples.append(time.perf_counter() - started)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(samples)


def growth_ratio(fn: Callable[[T], object], make: Callable[[int], T], n: int,
                 factor: int = 8, repeat: int = 5) -> float:
    """cost(make(n * factor)) / cost(make(n)), each the median of ``repeat`` runs.

    The small size is timed with more repetitions inside one sample so that timer
    resolution and call overhead do not dominate it.
    """
    small = make(n)
    fn(small)  # warm caches and lazy imports
    # Grow the small size until one call takes a measurable time (about 2 ms): a tiny
    # input is timed mostly by noise, and its ratio to the large one swings wildly.
    most = n * MAX_SCALE
    while median_seconds(fn, small, 3) < MIN_SMALL_SECONDS and n < most:
        n *= 2
        small = make(n)
    large = make(n * factor)
    inner = max(1, factor // 2)

    def small_batch(arg: T) -> None:
        for _ in range(inner):
            fn(arg)

    small_cost = median_seconds(small_batch, small, repeat) / inner
    large_cost = median_seconds(fn, large, repeat)
    return large_cost / max(small_cost, 1e-7)


def assert_linear(fn: Callable[[T], object], make: Callable[[int], T], n: int,
                  factor: int = 8, repeat: int = 5, tries: int = 3) -> None:
    """Fail when ``fn`` grows clearly faster than linearly between ``n`` and ``n*factor``.

    Linear cost gives about ``factor``; quadratic gives ``factor ** 2``. The bound sits at
    three times linear (24 for the default 8), and a noisy reading is retried.
    """
    bound = 3 * factor
    ratios = []
    for _ in range(tries):
        ratio = growth_ratio(fn, make, n, factor, repeat)
        if ratio < bound:
            return
        ratios.append(ratio)
    raise AssertionError(f"cost grows super-linearly: x{factor} input cost "
                         f"{', '.join(f'x{r:.1f}' for r in ratios)} (bound x{bound})")
