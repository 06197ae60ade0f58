"""Noticing that an HTTP client hung up while the server holds its request.

A long poll or an event stream that outlives its client would keep its per-IP and per-key
stream slot and its hub subscription until its own timeout (up to minutes), so a test
runner that gave up on a wait and retried could find itself refused with 429. Once the
request body is read, the next ASGI ``receive()`` only returns when the connection closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

T = TypeVar("T")


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has closed the connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T | None:
    """The result of ``work``; None, with ``work`` cancelled, if the client hangs up first."""
    task = asyncio.create_task(work)
    gone = asyncio.create_task(until_disconnect(receive))
    done: set[asyncio.Task[Any]] = set()
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request itself is cancelled (shutdown)
        gone.cancel()
        task.cancel()  # no-op once it finished
        await asyncio.gather(task, gone, return_exceptions=True)
    return task.result() if task in done else None  # re-raises what the work raised
