"""Which asyncio event loop runs the service: uvloop when installed, else asyncio's own.

uvloop is a drop-in implementation of the asyncio event loop on libuv: same coroutines,
transports and protocols (aiosmtpd, uvicorn, asyncpg all run on it unchanged), with the
loop's own work per I/O event done in C. Measured with ``python -m mailsac bench``
(README, Benchmarks) it lowers both the API's latency and the CPU each stored message
costs. ``MAILSAC_EVENT_LOOP=asyncio`` runs on the standard loop (the same code paths,
only slower), e.g. to rule the loop out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``kind`` (auto, uvloop, asyncio); None means asyncio's default."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise RuntimeError("MAILSAC_EVENT_LOOP=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``kind`` selects."""
    factory = loop_factory(kind)
    log.debug("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
