"""Webhook/Slack delivery records: created with the message, claimed and retried later.

A row belongs to the account whose address settings created it (``account_id``) and is
shown only to that account. Its payload is dropped when the message is deleted (a
database trigger, see migration 0006) or after the payload retention period; finished
rows are deleted after the history retention period (:func:`expire`).

Payloads grow with the message (the raw source is part of them), so they never pass
through JSON encoding or decoding on the event loop: :class:`NewDelivery` carries the
payload already encoded as JSON text (made in a worker thread), it is inserted as text and
cast to JSONB by the server, claiming rows does not fetch payloads at all, and
:func:`payload_text` reads one payload back as text for the attempt that sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import webhook_deliveries as table


@dataclass(frozen=True, slots=True)
class NewDelivery:
    message_id: str
    address: str
    kind: str  # "webhook" or "slack"
    url: str
    payload: str  # JSON text (see the module docstring)
    account_id: str | None = None  # the owner of the address whose settings created it

    def as_row(self) -> dict[str, Any]:
        """The row for :func:`insert_rows` (also what the outage journal keeps)."""
        return {"message_id": self.message_id, "address": self.address, "kind": self.kind,
                "url": self.url, "payload_json": self.payload, "account_id": self.account_id}


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    message_id: str
    address: str
    kind: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    account_id: str | None


_COLS = table.c["id", "message_id", "address", "kind", "url", "status", "attempts",
                "next_attempt_at", "last_status_code", "last_error", "created_at", "updated_at",
                "account_id"]

# The payload goes in as text; the server parses it into JSONB.
_INSERT = table.insert().values(payload=cast(bindparam("payload_json", type_=Text), JSONB))


async def insert_deliveries(conn: AsyncConnection, rows: list[NewDelivery]) -> None:
    await insert_rows(conn, [r.as_row() for r in rows])


async def insert_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert rows shaped like :meth:`NewDelivery.as_row`."""
    if rows:
        await conn.execute(_INSERT, rows)


async def payload_text(conn: AsyncConnection, delivery_id: int) -> str | None:
    """One delivery's payload as JSON text; None once it was dropped."""
    query = select(cast(table.c.payload, Text)).where(table.c.id == delivery_id)
    value = (await conn.execute(query)).scalar_one_or_none()
    return value if isinstance(value, str) else None


async def claim_due(conn: AsyncConnection, now: datetime, limit: int,
                    lease_until: datetime) -> list[Delivery]:
    """Pending deliveries whose time has come; leased (pushed forward) so a crash mid-send
    only delays them and two workers never send the same one at once."""
    due = (select(table.c.id).where(table.c.status == "pending", table.c.next_attempt_at <= now,
                                    table.c.payload.is_not(None))
           .order_by(table.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True))
    rows = await conn.execute(
        update(table).where(table.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until).returning(*_COLS))
    return [Delivery(*r) for r in rows]


async def record_attempt(conn: AsyncConnection, delivery_id: int, *, status: str,
                         attempts: int, next_attempt_at: datetime, code: int | None,
                         error: str | None) -> None:
    # A delivery whose payload was dropped while it was being sent is not retried.
    new_status = case((and_(table.c.payload.is_(None), literal(status) == "pending"),
                       literal("cancelled")), else_=literal(status))
    await conn.execute(
        update(table).where(table.c.id == delivery_id)
        .values(status=new_status, attempts=attempts, next_attempt_at=next_attempt_at,
                last_status_code=code, last_error=error, updated_at=func.now()))


async def recent_for_address(conn: AsyncConnection, address: str, account_id: str,
                             limit: int) -> list[Delivery]:
    """The newest deliveries of ``address`` that ``account_id`` created (never another's)."""
    query = (select(*_COLS).where(table.c.address == address, table.c.account_id == account_id)
             .order_by(table.c.id.desc()).limit(limit))
    return [Delivery(*r) for r in await conn.execute(query)]


async def expire(conn: AsyncConnection, *, payloads_before: datetime,
                 finished_before: datetime, batch: int) -> tuple[int, int]:
    """Drop payloads older than ``payloads_before`` (cancelling what is still pending) and
    delete finished rows last updated before ``finished_before``; at most ``batch`` each.
    Returns (payloads dropped, rows deleted)."""
    old = (select(table.c.id).where(table.c.payload.is_not(None),
                                    table.c.created_at < payloads_before)
           .limit(batch).with_for_update(skip_locked=True))
    dropped = await conn.execute(
        update(table).where(table.c.id.in_(old.scalar_subquery()))
        .values(payload=null(), updated_at=func.now(),  # SQL NULL, not JSON null
                status=case((table.c.status == "pending", literal("cancelled")),
                            else_=table.c.status)))
    finished = (select(table.c.id).where(table.c.status != "pending",
                                         table.c.updated_at < finished_before)
                .limit(batch).with_for_update(skip_locked=True))
    deleted = await conn.execute(delete(table).where(table.c.id.in_(finished.scalar_subquery())))
    return int(dropped.rowcount), int(deleted.rowcount)


async def next_due(conn: AsyncConnection) -> datetime | None:
    query = select(func.min(table.c.next_attempt_at)).where(table.c.status == "pending")
    value = (await conn.execute(query)).scalar_one()
    return value if isinstance(value, datetime) else None
