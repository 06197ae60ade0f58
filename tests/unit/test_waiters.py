"""The shared wait-with-deadline used by connection admission and the DATA budget."""

from __future__ import annotations

import asyncio

import pytest

from mailsac.waiters import Waiters


async def test_wakes_when_the_condition_holds_and_times_out_otherwise() -> None:
    waiters, state = Waiters(), {"free": False}
    task = asyncio.create_task(waiters.wait_until(lambda: state["free"], 30))
    await asyncio.sleep(0)
    assert len(waiters) == 1
    waiters.wake_all()  # re-checked: still not ready, so it keeps waiting
    await asyncio.sleep(0)
    assert not task.done()
    state["free"] = True
    waiters.wake_all()
    assert await task is True and len(waiters) == 0
    assert await Waiters().wait_until(lambda: False, 0.01) is False


async def test_a_cancel_that_races_the_wake_up_is_not_lost() -> None:
    """asyncio.wait_for on Python 3.11 returns normally when cancelled just as its
    future completes; a waiter must end cancelled, never go on to take a slot."""
    waiters, taken = Waiters(), []

    def ready() -> bool:
        taken.append(1)
        return len(taken) > 1

    task = asyncio.create_task(waiters.wait_until(ready, 30))
    await asyncio.sleep(0)
    waiters.wake_all()  # the wake-up and the cancellation arrive together
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(taken) == 1 and len(waiters) == 0
