"""The event loop choice (MAILSAC_EVENT_LOOP) and the start-up heap freeze."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from mailsac import eventloop
from mailsac.gctune import settle_heap
from mailsac.timeutil import sleep_at_least


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_and_uvloop_run_on_uvloop() -> None:
    assert eventloop.loop_factory("auto") is uvloop.new_event_loop
    assert eventloop.run(_loop_type(), "auto") == "uvloop"
    assert eventloop.run(_loop_type(), "uvloop") == "uvloop"


def test_asyncio_runs_on_the_standard_loop() -> None:
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_loop_type(), "asyncio") == "asyncio"


def test_uvloop_required_but_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert eventloop.loop_factory("auto") is None
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        eventloop.loop_factory("uvloop")


def test_settle_heap_freezes_what_is_alive() -> None:
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


async def _shortest_of(sleep: Callable[[float], Awaitable[None]], seconds: float) -> float:
    shortest = float("inf")
    for _ in range(40):
        sum(range(50_000))  # work earlier in the same loop iteration ages uvloop's cached time
        started = time.monotonic()
        await sleep(seconds)
        shortest = min(shortest, time.monotonic() - started)
    return shortest


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_promised_delays_never_end_early(kind: str) -> None:
    # Failed-login delays and injected SMTP delays promise "at least": uvloop's own timers
    # can end a sleep early (CI saw 0.29993 s for 0.3 s), sleep_at_least must not.
    assert eventloop.run(_shortest_of(sleep_at_least, 0.01), kind) >= 0.01
