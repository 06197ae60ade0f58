"""Persistence of the deny-list (the in-memory matcher is :mod:`mailsac.throttle`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.directory import notify
from mailsac.storage.models import deny_list


@dataclass(frozen=True, slots=True)
class DenyRow:
    value: str
    kind: str
    reason: str
    created_at: datetime


_COLS = deny_list.c["value", "kind", "reason", "created_at"]


async def load(conn: AsyncConnection) -> list[DenyRow]:
    return [DenyRow(*r) for r in await conn.execute(select(*_COLS).order_by(deny_list.c.value))]


async def upsert(conn: AsyncConnection, value: str, kind: str, reason: str) -> DenyRow:
    statement = insert(deny_list).values(value=value, kind=kind, reason=reason)
    row = (await conn.execute(
        statement.on_conflict_do_update(index_elements=[deny_list.c.value],
                                        set_={"reason": reason, "kind": kind})
        .returning(*_COLS))).one()
    await notify(conn)
    return DenyRow(*row)


async def remove(conn: AsyncConnection, value: str) -> bool:
    result = await conn.execute(delete(deny_list).where(deny_list.c.value == value))
    await notify(conn)
    return bool(result.rowcount)
