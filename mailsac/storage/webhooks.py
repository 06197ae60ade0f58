"""Webhook/Slack delivery records: created with the message, claimed and retried later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import webhook_deliveries as table


@dataclass(frozen=True, slots=True)
class NewDelivery:
    message_id: str
    address: str
    kind: str  # "webhook" or "slack"
    url: str
    payload: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "address": self.address, "kind": self.kind,
                "url": self.url, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    message_id: str
    address: str
    kind: str
    url: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


_COLS = table.c["id", "message_id", "address", "kind", "url", "payload", "status", "attempts",
                "next_attempt_at", "last_status_code", "last_error", "created_at", "updated_at"]


async def insert_deliveries(conn: AsyncConnection, rows: list[NewDelivery]) -> None:
    if rows:
        await conn.execute(table.insert(), [r.as_row() for r in rows])


async def claim_due(conn: AsyncConnection, now: datetime, limit: int,
                    lease_until: datetime) -> list[Delivery]:
    """Pending deliveries whose time has come; leased (pushed forward) so a crash mid-send
    only delays them and two workers never send the same one at once."""
    due = (select(table.c.id).where(table.c.status == "pending", table.c.next_attempt_at <= now)
           .order_by(table.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    rows = await conn.execute(
        update(table).where(table.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until).returning(*_COLS))
    return [Delivery(*r) for r in rows]


async def record_attempt(conn: AsyncConnection, delivery_id: int, *, status: str,
                         attempts: int, next_attempt_at: datetime, code: int | None,
                         error: str | None) -> None:
    await conn.execute(
        update(table).where(table.c.id == delivery_id)
        .values(status=status, attempts=attempts, next_attempt_at=next_attempt_at,
                last_status_code=code, last_error=error, updated_at=func.now()))


async def recent_for_address(conn: AsyncConnection, address: str, limit: int) -> list[Delivery]:
    query = (select(*_COLS).where(table.c.address == address)
             .order_by(table.c.id.desc()).limit(limit))
    return [Delivery(*r) for r in await conn.execute(query)]


async def next_due(conn: AsyncConnection) -> datetime | None:
    query = select(func.min(table.c.next_attempt_at)).where(table.c.status == "pending")
    value = (await conn.execute(query)).scalar_one()
    return value if isinstance(value, datetime) else None
