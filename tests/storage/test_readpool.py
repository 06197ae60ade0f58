"""The hot-read pool against the real PostgreSQL: the same records as the SQLAlchemy
path, and the same failures (503, 400) as :func:`mailsac.storage.db.connect`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.delivery import InboundMessage, build_records, public_routes
from mailsac.errors import InvalidRequest, StorageUnavailable
from mailsac.mime import parse_message
from mailsac.policy import parse_recipient
from mailsac.storage import MessageRecord, new_blob_key
from mailsac.storage import messages as queries
from mailsac.storage.db import connect, connect_options, create_engine
from mailsac.storage.readpool import ReadPool
from mailsac.timeutil import now_ms
from mailsac.visibility import visible_to
from tests.helpers import unique_inbox

_LISTING = queries.inbox_listing(visible_to(bindparam("account")))  # type: ignore[arg-type]

RAW = (b"Subject: pooled =?utf-8?q?caf=C3=A9?=\r\nFrom: Ann <a@example.org>\r\n"
       b"Cc: c@example.org\r\nContent-Type: text/html\r\n\r\n"
       b'<a href="https://example.org/confirm?x=1">confirm</a>\r\n')


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=2)
    yield eng
    await eng.dispose()


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[ReadPool]:
    pool = ReadPool(engine, connect_options(), size=2)
    yield pool
    await pool.close()


async def _stored(engine: AsyncEngine, inbox: str, count: int) -> list[MessageRecord]:
    records = []
    for _ in range(count):
        msg = InboundMessage(mail_from="a@example.org", recipients=[parse_recipient(inbox)],
                             content=RAW, client_ip="127.0.0.1", client_helo="t",
                             via="127.0.0.1")
        records += build_records(msg, parse_message(RAW), public_routes(msg.recipients),
                                 new_blob_key(), len(RAW), now_ms())
    async with engine.begin() as conn:
        await queries.insert_messages(conn, records)
    return records


async def test_listing_and_get_match_the_sqlalchemy_path(engine: AsyncEngine,
                                                         reads: ReadPool) -> None:
    inbox = unique_inbox("readpool.test")
    stored = await _stored(engine, inbox, 3)
    async with connect(engine) as conn:
        expected = await queries.list_inbox(conn, inbox, limit=10)
    listed = await queries.run_listing(reads, _LISTING, inbox=inbox, account=None, limit=10)
    assert listed == expected  # every field, JSON lists decoded, in field order
    assert {r.id for r in listed} == {r.id for r in stored}
    assert listed[0].links == ["https://example.org/confirm?x=1"]
    assert listed[0].from_addrs[0]["address"] == "a@example.org"
    assert await queries.get_message(reads, inbox, stored[1].id) == stored[1]
    assert await queries.get_message(reads, inbox, "no-such-id") is None
    assert await queries.get_message(reads, unique_inbox("readpool.test"), stored[1].id) is None


async def test_a_nul_in_a_parameter_is_the_callers_error(reads: ReadPool) -> None:
    with pytest.raises(InvalidRequest, match="NUL"):
        await queries.get_message(reads, "a\x00b@readpool.test", "x")


async def test_an_unreachable_database_is_storage_unavailable(database_url: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    eng = create_engine(f"postgresql+asyncpg://mailsac@127.0.0.1:{port}/mailsac",
                        connect_timeout=1)
    pool = ReadPool(eng, connect_options(connect_timeout=1))
    try:
        with pytest.raises(StorageUnavailable):
            await queries.get_message(pool, "x@readpool.test", "x")
    finally:
        await pool.close()
        await eng.dispose()
