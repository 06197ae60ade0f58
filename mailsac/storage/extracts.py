"""Stored codes and links of messages (``message_extracts``). Functions take a connection;
the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, cast, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import message_extracts

# (message id, the extract as JSON text)
ExtractRow = tuple[str, str]


async def insert_extracts(conn: AsyncConnection, rows: Sequence[ExtractRow]) -> None:
    """Insert rows with binary COPY, in the caller's transaction (right after the
    messages they belong to: the same commit stores both)."""
    if not rows:
        return
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table("message_extracts", records=list(rows),
                                       columns=("message_id", "data"))


async def get_extract(conn: AsyncConnection, message_id: str) -> str | None:
    """The stored extract of ``message_id`` as JSON text (not decoded here), or None."""
    query = select(cast(message_extracts.c.data, String)).where(
        message_extracts.c.message_id == message_id)
    value = (await conn.execute(query)).scalar()
    return str(value) if value is not None else None


async def store_extract(conn: AsyncConnection, message_id: str, data: str) -> None:
    """Store an extract computed on demand (one stored concurrently wins; a message
    deleted meanwhile gets none)."""
    await conn.execute(_STORE, {"id": message_id, "data": data})


_STORE = text(
    "INSERT INTO message_extracts (message_id, data) "
    "SELECT id, CAST(:data AS jsonb) FROM messages WHERE id = :id "
    "ON CONFLICT (message_id) DO NOTHING")
