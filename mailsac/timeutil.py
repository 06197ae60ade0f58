"""Time helpers shared by the domain and the API: UTC, millisecond precision."""

from __future__ import annotations

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
