"""FairGate: slots round-robin across keys, never more holders than slots, and no slot
lost to a waiter cancelled before or after it was granted."""

from __future__ import annotations

import asyncio

import pytest

from mailsac.fairgate import FairGate


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_burst_from_one_key_does_not_queue_ahead_of_another_key() -> None:
    gate = FairGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with gate.slot(key):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(hold("flooder", "f0"))
    await _settle()
    burst = [asyncio.create_task(hold("flooder", f"f{i}")) for i in range(1, 20)]
    await _settle()
    other = asyncio.create_task(hold("quiet", "q"))
    await _settle()
    assert order == ["f0"] and gate.waiting == 20
    release.set()
    await asyncio.gather(first, *burst, other)
    # The quiet key waits for one more turn of the flooder, not for its whole burst.
    assert order.index("q") == 2, order
    assert sorted(order) == sorted(["q", *(f"f{i}" for i in range(20))])


async def test_holders_never_exceed_the_slots() -> None:
    gate = FairGate(3)
    peak = 0

    async def work(key: str) -> None:
        nonlocal peak
        async with gate.slot(key):
            peak = max(peak, gate.holders)
            await asyncio.sleep(0)

    await asyncio.gather(*(work(f"k{i % 4}") for i in range(40)))
    assert peak == 3
    assert gate.holders == 0 and gate.waiting == 0


async def test_a_waiter_cancelled_while_queued_loses_no_slot() -> None:
    gate = FairGate(1)
    release = asyncio.Event()

    async def hold(key: str) -> None:
        async with gate.slot(key):
            await release.wait()

    holder = asyncio.create_task(hold("a"))
    await _settle()
    queued = asyncio.create_task(hold("b"))
    await _settle()
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await holder
    assert gate.holders == 0
    async with asyncio.timeout(1):  # the slot is free again, not stuck behind "b"
        async with gate.slot("c"):
            assert gate.holders == 1


async def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on() -> None:
    gate = FairGate(1)
    got: list[str] = []

    async def take(key: str) -> None:
        async with gate.slot(key):
            got.append(key)

    async with gate.slot("a"):
        granted_then_cancelled = asyncio.create_task(take("b"))
        await _settle()
        after = asyncio.create_task(take("c"))
        await _settle()
    # Leaving the block granted "b"'s slot; "b" is cancelled before it can run.
    granted_then_cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await granted_then_cancelled
    async with asyncio.timeout(1):
        await after
    assert got == ["c"]
    assert gate.holders == 0 and gate.waiting == 0


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        FairGate(0)
