"""Waiting, with a deadline, for a condition that other code makes true (no polling)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Waiters:
    """Tasks waiting until a condition holds; :meth:`wake_all` makes each re-check it.

    Used by the connection admission and the DATA memory budget (single event loop)."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._futures)

    def wake_all(self) -> None:
        for wake in self._futures:
            if not wake.done():
                wake.set_result(None)

    async def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """True once ``ready()`` holds; False when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            wake: asyncio.Future[None] = loop.create_future()
            self._futures.add(wake)
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                # arrives as the wake-up does, and the cancelled task would go on to take
                # a slot it never gives back.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await wake
            finally:
                self._futures.discard(wake)
        return True
