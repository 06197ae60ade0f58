"""Time helpers shared by the domain and the API: UTC, millisecond precision."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


def now_ms() -> datetime:
    """The current UTC time truncated to milliseconds (the precision the API reports)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso_ms(value: datetime) -> str:
    """``2026-11-24T22:51:48.123Z``: UTC, millisecond precision, Z suffix."""
    if value.tzinfo is not UTC:  # the driver's timestamps already are UTC
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


async def sleep_at_least(seconds: float) -> None:
    """Sleep no less than ``seconds`` by the monotonic clock.

    uvloop's timers are measured from the loop's cached time, taken when the current
    iteration began, so a plain ``asyncio.sleep`` can return up to a millisecond or so
    early. Delays that are promises (slowed-down failed logins, injected faults) use this.
    """
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(remaining)
