"""Message metadata queries. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import accounts, messages
from mailsac.storage.rawquery import RawQuery
from mailsac.storage.readpool import ReadPool


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One stored message's metadata (one row per recipient inbox)."""

    id: str
    inbox: str
    original_inbox: str
    domain: str
    received: datetime
    size: int
    blob_key: str
    subject: str
    from_addrs: list[dict[str, str]]
    to_addrs: list[dict[str, str]]
    cc_addrs: list[dict[str, str]]
    bcc_addrs: list[dict[str, str]]
    attachments: list[str] | None
    links: list[str]
    ip: str
    via: str
    mail_from: str
    message_id: str | None
    folder: str
    labels: list[str]
    read: bool
    rtls: bool
    saved_by: str | None
    spam: float | None
    account_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> MessageRecord:
        return cls(**{name: row[name] for name in _FIELD_NAMES})

    @classmethod
    def from_record(cls, record: Any) -> MessageRecord:
        """From a driver record of ``_COLUMNS`` (a :class:`RawQuery`'s row): its values
        are in field order, so no lookup by name."""
        return cls(*record.values())

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES = tuple(f.name for f in fields(MessageRecord))
_COLUMNS = [messages.c[name] for name in _FIELD_NAMES]
_IS_JSONB = tuple(isinstance(column.type, JSONB) for column in _COLUMNS)
# The same columns with every JSON list (addresses, links, attachments, labels) replaced by
# SQL NULL: for callers that need only ids and sizes (a POP3 maildrop of 10,000 messages),
# so the database neither sends nor the event loop decodes what they would throw away.
_LIGHT_COLUMNS = [null().label(column.name) if is_json else column
                  for column, is_json in zip(_COLUMNS, _IS_JSONB, strict=True)]


async def insert_messages(conn: AsyncConnection, records: Sequence[MessageRecord]) -> None:
    """Insert rows with PostgreSQL's binary COPY, in the caller's transaction.

    The group-commit writer's hot path: COPY skips building and binding a multi-row
    INSERT (the largest share of a commit's CPU in this process under a flood). JSONB
    values are passed as JSON text, as SQLAlchemy's own codec expects (``None`` becomes
    JSON ``null``, exactly as an INSERT through SQLAlchemy stores it).
    """
    if not records:
        return
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens its transaction at the first statement; COPY
        # on the bare driver must not run (and commit) outside the caller's transaction.
        await conn.exec_driver_sql("SELECT 1")
        if not driver.is_in_transaction():
            raise RuntimeError("insert_messages must run inside a transaction")
    encoded: dict[int, str] = {}  # id(value) -> JSON: rows of one message share their lists

    def as_json(value: Any) -> str:
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = json.dumps(value, separators=(",", ":"))
        return text

    rows = [
        tuple(as_json(value) if json_column else value
              for value, json_column in zip(_values(record), _IS_JSONB, strict=True))
        for record in records
    ]
    await driver.copy_records_to_table("messages", records=rows, columns=_FIELD_NAMES)


def _values(record: MessageRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in _FIELD_NAMES)


Condition = ColumnElement[bool]


def _always(condition: Condition | None) -> Condition:
    return condition if condition is not None else true()


async def list_inbox(
    conn: AsyncConnection, inbox: str, *, limit: int, until: datetime | None = None,
    condition: Condition | None = None, light: bool = False,
) -> list[MessageRecord]:
    """Newest first; ``until`` returns only messages received strictly before it.

    ``light`` leaves the JSON list fields out (None): for ids, sizes and dates only."""
    query = select(*(_LIGHT_COLUMNS if light else _COLUMNS)).where(
        messages.c.inbox == inbox, _always(condition))
    if until is not None:
        query = query.where(messages.c.received < until)
    query = query.order_by(messages.c.received.desc(), messages.c.id.desc()).limit(limit)
    result = await conn.execute(query)
    return [MessageRecord.from_row(row) for row in result.mappings()]


_BY_INBOX = messages.c.inbox == bindparam("inbox")
_GET = RawQuery(select(*_COLUMNS).where(messages.c.id == bindparam("id"), _BY_INBOX))


def inbox_listing(condition: Condition, *, until: bool = False) -> RawQuery:
    """:func:`list_inbox` as one precompiled statement (:mod:`mailsac.storage.rawquery`)
    for the API's hot path. ``condition`` may hold bind parameters (the caller's
    visibility rule for a ``bindparam("account")``); the statement binds ``inbox``,
    ``limit`` and, with ``until``, ``until`` too. Build it once, at import."""
    where = [_BY_INBOX, condition]
    if until:
        where.append(messages.c.received < bindparam("until"))
    return RawQuery(select(*_COLUMNS).where(*where)
                    .order_by(messages.c.received.desc(), messages.c.id.desc())
                    .limit(bindparam("limit")))


async def run_listing(reads: ReadPool, query: RawQuery, **params: Any
                      ) -> list[MessageRecord]:
    """Records from an :func:`inbox_listing` statement, newest first."""
    return [MessageRecord.from_record(row) for row in await reads.fetch(query, **params)]


async def count_inbox(
    conn: AsyncConnection, inbox: str, condition: Condition | None = None
) -> int:
    query = select(func.count()).select_from(messages).where(
        messages.c.inbox == inbox, _always(condition))
    return int((await conn.execute(query)).scalar_one())


async def get_message(reads: ReadPool, inbox: str, message_id: str) -> MessageRecord | None:
    rows = await reads.fetch(_GET, id=message_id, inbox=inbox)
    return MessageRecord.from_record(rows[0]) if rows else None


async def get_by_id(conn: AsyncConnection, message_id: str) -> MessageRecord | None:
    row = (await conn.execute(select(*_COLUMNS).where(messages.c.id == message_id))
           ).mappings().first()
    return MessageRecord.from_row(row) if row else None


async def delete_message(
    conn: AsyncConnection, inbox: str, message_id: str
) -> MessageRecord | None:
    query = (
        delete(messages)
        .where(and_(messages.c.id == message_id, messages.c.inbox == inbox))
        .returning(*_COLUMNS)
    )
    row = (await conn.execute(query)).mappings().first()
    return MessageRecord.from_row(row) if row else None


async def purge_inbox(
    conn: AsyncConnection, inbox: str, condition: Condition | None = None
) -> list[str]:
    """Delete every non-starred message of ``inbox``; return their blob keys."""
    query = (
        delete(messages)
        .where(messages.c.inbox == inbox, messages.c.saved_by.is_(None), _always(condition))
        .returning(messages.c.blob_key)
    )
    return [row[0] for row in await conn.execute(query)]


async def referenced_blob_keys(conn: AsyncConnection, keys: Iterable[str]) -> set[str]:
    """The subset of ``keys`` that some message row still refers to."""
    wanted = list(set(keys))
    if not wanted:
        return set()
    query = select(messages.c.blob_key).where(messages.c.blob_key.in_(wanted)).distinct()
    return {row[0] for row in await conn.execute(query)}


async def unreferenced_blob_keys(conn: AsyncConnection, keys: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(keys))
    used = await referenced_blob_keys(conn, wanted)
    return [k for k in wanted if k not in used]


async def update_message(
    conn: AsyncConnection, message_id: str, **values: Any
) -> MessageRecord | None:
    query = (update(messages).where(messages.c.id == message_id).values(**values)
             .returning(*_COLUMNS))
    row = (await conn.execute(query)).mappings().first()
    return MessageRecord.from_row(row) if row else None


async def select_messages(
    conn: AsyncConnection, condition: Condition, *, limit: int, skip: int = 0,
    oldest_first: bool = False,
) -> list[MessageRecord]:
    """Messages matching ``condition``, newest first (or oldest first)."""
    order = ((messages.c.received, messages.c.id) if oldest_first
             else (messages.c.received.desc(), messages.c.id.desc()))
    query = select(*_COLUMNS).where(condition).order_by(*order).offset(skip).limit(limit)
    return [MessageRecord.from_row(r) for r in (await conn.execute(query)).mappings()]


async def count_messages(conn: AsyncConnection, condition: Condition) -> int:
    query = select(func.count()).select_from(messages).where(condition)
    return int((await conn.execute(query)).scalar_one())


async def starred_quota(conn: AsyncConnection, account_id: str) -> tuple[int, int]:
    """(messages ``account_id`` starred, in any inbox; the account's ``message_limit``)."""
    starred = await count_messages(conn, messages.c.saved_by == account_id)
    limit = (await conn.execute(select(accounts.c.message_limit)
                                .where(accounts.c.id == account_id))).scalar()
    return starred, int(limit) if limit is not None else 0


async def sum_sizes(conn: AsyncConnection, condition: Condition) -> int:
    query = select(func.coalesce(func.sum(messages.c.size), 0)).where(condition)
    return int((await conn.execute(query)).scalar_one())


async def delete_messages(conn: AsyncConnection, condition: Condition) -> list[str]:
    """Delete every message matching ``condition``; return their blob keys."""
    query = delete(messages).where(condition).returning(messages.c.blob_key)
    return [row[0] for row in await conn.execute(query)]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: Any, text: str) -> Condition:
    """Case-insensitive substring match (LIKE wildcards in ``text`` match literally)."""
    return cast(column, String).ilike(f"%{_escape_like(text)}%", escape="\\")
