"""The event loop choice (MAILSAC_EVENT_LOOP) and the start-up heap freeze."""

from __future__ import annotations

import asyncio
import gc

import pytest
import uvloop

from mailsac import eventloop
from mailsac.gctune import settle_heap


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
