"""Event-loop lag monitor: the clearest single signal that the process is overloaded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoopMonitor:
    """Measures how late a periodic wake-up runs (the loop's lag) and calls ``on_tick``."""

    interval: float = 0.25
    on_tick: list[Callable[[], None]] = field(default_factory=list)
    lag: float = 0.0
    max_lag: float = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lag = max(0.0, time.perf_counter() - started - self.interval)
            self.max_lag = max(self.max_lag, self.lag)
            for callback in self.on_tick:
                callback()
