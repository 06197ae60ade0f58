"""Storage against the real PostgreSQL and a real blob directory (in-process)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.delivery import InboundMessage, build_records, public_routes
from mailsac.errors import StorageFull, StorageUnavailable
from mailsac.mime import parse_message
from mailsac.policy import parse_recipient
from mailsac.storage import LocalBlobStore as BlobStore
from mailsac.storage import MessageRecord, MetadataWriter, new_blob_key
from mailsac.storage import messages as queries
from mailsac.storage.db import create_engine
from mailsac.storage.sweeper import sweep_orphans
from mailsac.timeutil import now_ms


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=4)
    yield eng
    await eng.dispose()


def _records(blob_key: str, *inboxes: str) -> list[MessageRecord]:
    raw = b"Subject: stored\r\nFrom: a@example.org\r\n\r\nbody\r\n"
    msg = InboundMessage(mail_from="a@example.org",
                         recipients=[parse_recipient(i) for i in inboxes], content=raw,
                         client_ip="127.0.0.1", client_helo="t", via="127.0.0.1")
    return build_records(msg, parse_message(raw), public_routes(msg.recipients), blob_key,
                         len(raw), now_ms())


async def test_writer_groups_concurrent_inserts(engine: AsyncEngine) -> None:
    writer = MetadataWriter(engine)
    writer.start()
    try:
        batches = [_records(new_blob_key(), f"w{n}@writer.test") for n in range(50)]
        await asyncio.gather(*(writer.insert(b) for b in batches))
        assert writer.rows == 50
        assert writer.batches < 50  # concurrent waiters shared commits
        async with engine.connect() as conn:
            assert await queries.count_inbox(conn, "w7@writer.test") == 1
    finally:
        await writer.stop()


async def test_writer_failure_is_reported_to_every_waiter(engine: AsyncEngine) -> None:
    writer = MetadataWriter(engine)
    writer.start()
    try:
        (record,) = _records(new_blob_key(), "dup@writer.test")
        await writer.insert([record])
        with pytest.raises(StorageUnavailable):
            await writer.insert([record])  # duplicate primary key: the batch fails
        (fresh,) = _records(new_blob_key(), "dup@writer.test")
        await writer.insert([fresh])  # and the writer keeps working afterwards
    finally:
        await writer.stop()


async def test_writer_refuses_when_not_running(engine: AsyncEngine) -> None:
    with pytest.raises(StorageUnavailable):
        await MetadataWriter(engine).insert(_records(new_blob_key(), "x@writer.test"))


async def test_blob_round_trip_and_fan_out(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    key = new_blob_key()
    await blobs.write(key, b"hello\r\n")
    path = blobs.path_for(key)
    assert path.parent.parent.parent == tmp_path / "blobs"
    assert path.parent.name == key[2:4] and path.parent.parent.name == key[0:2]
    assert await blobs.read(key) == b"hello\r\n"
    assert not list(path.parent.glob("*.tmp"))
    assert await blobs.delete([key]) == 1
    assert not path.exists()


async def test_blob_write_errors_are_domain_errors(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StorageUnavailable) as info:
        await BlobStore(not_a_dir).write(new_blob_key(), b"data")
    assert not isinstance(info.value, StorageFull)
    if Path("/dev/full").exists():
        blobs = BlobStore(tmp_path / "full")
        key = new_blob_key()
        blobs.path_for(key).parent.mkdir(parents=True)
        os.symlink("/dev/full", blobs.path_for(key).parent / f"{key}.tmp")
        with pytest.raises(StorageFull):
            await blobs.write(key, b"x" * 100_000)


async def test_orphan_sweep_removes_only_unreferenced_old_blobs(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    kept, orphan, young = new_blob_key(), new_blob_key(), new_blob_key()
    for key in (kept, orphan, young):
        await blobs.write(key, b"raw")
    async with engine.begin() as conn:
        await queries.insert_messages(conn, _records(kept, "sweep@writer.test"))
    old = time.time() - 3600
    for key in (kept, orphan):
        os.utime(blobs.path_for(key), (old, old))
    stale_tmp = blobs.path_for(young).parent / "deadbeefdeadbeef.tmp"
    stale_tmp.write_bytes(b"half")
    os.utime(stale_tmp, (old, old))
    removed = await sweep_orphans(engine, blobs, min_age=600)
    assert removed == 1
    assert blobs.path_for(kept).exists()
    assert not blobs.path_for(orphan).exists()
    assert blobs.path_for(young).exists()  # too new: its commit may still be in flight
    assert not stale_tmp.exists()


async def test_list_query_uses_the_inbox_index(engine: AsyncEngine) -> None:
    from sqlalchemy import text

    async with engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in await conn.execute(text(
            "EXPLAIN SELECT * FROM messages WHERE inbox = 'a@b.test' "
            "ORDER BY received DESC, id DESC LIMIT 20")))
    assert "ix_messages_inbox_received" in plan


async def test_copy_insert_stores_what_an_insert_statement_stores(engine: AsyncEngine) -> None:
    """insert_messages uses COPY: every column, JSONB values and SQL/JSON nulls included,
    must come out exactly as a plain INSERT through SQLAlchemy stores them."""
    from sqlalchemy import select, text

    from mailsac.storage.models import messages

    copied = _records(new_blob_key(), "copy@writer.test", "copy2@writer.test")
    inserted = [r.__class__(**{**r.as_row(), "id": r.id + "i", "inbox": "ins@writer.test"})
                for r in _records(new_blob_key(), "x@writer.test")]
    async with engine.begin() as conn:
        await queries.insert_messages(conn, copied)
        await conn.execute(messages.insert(), [r.as_row() for r in inserted])
    async with engine.connect() as conn:
        for record in [*copied, *inserted]:
            assert await queries.get_by_id(conn, record.id) == record
        kinds = (await conn.execute(text(
            "SELECT DISTINCT jsonb_typeof(attachments), message_id IS NULL, spam IS NULL "
            "FROM messages WHERE id = ANY(:ids)"),
            {"ids": [r.id for r in [*copied, *inserted]]})).all()
        assert len(kinds) == 1  # COPY and INSERT agree on JSON null vs SQL NULL
        assert (await conn.execute(select(messages.c.links).where(
            messages.c.id == copied[0].id))).scalar_one() == copied[0].links


async def test_copy_insert_is_part_of_the_callers_transaction(engine: AsyncEngine) -> None:
    (record,) = _records(new_blob_key(), "rolledback@writer.test")
    with pytest.raises(RuntimeError, match="roll back"):
        async with engine.begin() as conn:
            await queries.insert_messages(conn, [record])
            raise RuntimeError("roll back")
    async with engine.connect() as conn:
        assert await queries.get_by_id(conn, record.id) is None


def test_raw_driver_connection_errors_count_as_unavailable() -> None:
    """The COPY raises asyncpg's own exceptions; lost connections must still be journaled."""
    import asyncpg

    from mailsac.storage.db import is_unavailable

    assert is_unavailable(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert is_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert is_unavailable(asyncpg.CannotConnectNowError("starting up"))
    assert not is_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))
