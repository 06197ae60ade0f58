"""One computation per key at a time, shared by everyone who asks for it meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs ``compute()`` for a key unless a run for it is already going, in which case the
    caller joins that one. A finished result goes to ``keep(key, value)`` (a cache); a
    failure or cancellation is not kept: its waiters see it and the next caller tries
    again. Waiters are shielded, so one asker going away (a client disconnecting) does not
    cancel the run the others are waiting for."""

    def __init__(self, keep: Callable[[K, V], None]) -> None:
        self._keep = keep
        self._running: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, compute: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(compute())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is None:
            self._keep(key, task.result())
