"""A semaphore whose slots go round-robin across tenants instead of first come, first served.

With a plain :class:`asyncio.Semaphore`, one account that opens a thousand waits at once
queues a thousand database looks ahead of everyone else's next one. A :class:`FairGate`
keeps one FIFO queue per key (an account) and, whenever a slot frees, hands it to the
next key in turn: another account's request waits for at most one turn of each busy
account, however many requests those accounts have queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class FairGate:
    """At most ``slots`` holders at a time; waiting keys are served in rotation."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self._free = slots
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._turns: deque[Hashable] = deque()  # keys with waiters, in serving order

    @property
    def holders(self) -> int:
        return self.slots - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for queue in self._queues.values() for f in queue if not f.done())

    @asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        """Hold one slot for the block, waiting in ``key``'s queue for it if need be."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: Hashable) -> None:
        if self._free > 0 and not self._turns:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turns.append(key)
        queue.append(granted)
        self._grant()  # a free slot may be waiting behind queues of cancelled waiters
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # granted, then cancelled before it ran: pass it on
            raise  # a cancelled waiter still queued is skipped by _grant

    def _release(self) -> None:
        self._free += 1
        self._grant()

    def _grant(self) -> None:
        while self._free > 0 and self._turns:
            key = self._turns.popleft()
            queue = self._queues[key]
            waiter = queue.popleft()
            if queue:
                self._turns.append(key)  # its next waiter goes to the back of the rotation
            else:
                del self._queues[key]
            if waiter.done():  # cancelled while it waited
                continue
            self._free -= 1
            waiter.set_result(None)
