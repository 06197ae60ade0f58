"""The blob backends (local, postgres, s3) against real parts: the session PostgreSQL, an S3
API server on loopback (moto), and real ``mailsac serve`` nodes spoken to over SMTP/HTTP."""

from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.bench.s3local import LocalS3
from mailsac.delivery import InboundMessage, build_records, public_routes
from mailsac.errors import MessageNotFound
from mailsac.mime import parse_message
from mailsac.policy import parse_recipient
from mailsac.storage import BlobStore, LocalBlobStore, MessageRecord, new_blob_key
from mailsac.storage import messages as queries
from mailsac.storage.blobs_pg import PostgresBlobStore
from mailsac.storage.blobs_s3 import S3BlobStore, S3Options
from mailsac.storage.db import asyncpg_dsn, create_engine
from mailsac.storage.sweeper import sweep_orphans
from mailsac.timeutil import now_ms
from tests.helpers import (
    ServerHandle,
    make_message,
    start_private_server,
    stop_private_server,
    unique_inbox,
)

BACKENDS = ["local", "postgres", "s3"]


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=4)
    yield eng
    await eng.dispose()


def s3_store(s3: LocalS3, staging: Path, prefix: str = "") -> S3BlobStore:
    options = S3Options(bucket=s3.bucket, endpoint_url=s3.endpoint_url, access_key_id="t",
                        secret_access_key="t", path_style=True, prefix=prefix)
    return S3BlobStore(options, staging, timeout=10)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, engine: AsyncEngine,
                tmp_path: Path) -> AsyncIterator[BlobStore]:
    """One store of each backend (s3: under a prefix of its own in the session bucket)."""
    blobs: BlobStore
    if request.param == "local":
        blobs = LocalBlobStore(tmp_path / "blobs")
    elif request.param == "postgres":
        blobs = PostgresBlobStore(engine, tmp_path / "staging", timeout=10)
    else:
        s3 = request.getfixturevalue("s3_server")
        blobs = s3_store(s3, tmp_path / "staging", f"unit-{uuid.uuid4().hex[:8]}/")
    await blobs.start()
    yield blobs
    await blobs.close()


def _records(blob_key: str, inbox: str) -> list[MessageRecord]:
    raw = b"Subject: stored\r\nFrom: a@example.org\r\n\r\nbody\r\n"
    msg = InboundMessage(mail_from="a@example.org", recipients=[parse_recipient(inbox)],
                         content=raw, client_ip="127.0.0.1", client_helo="t", via="127.0.0.1")
    return build_records(msg, parse_message(raw), public_routes(msg.recipients), blob_key,
                         len(raw), now_ms())


async def _exists(blobs: BlobStore, key: str) -> bool:
    try:
        await blobs.read(key)
    except MessageNotFound:
        return False
    return True


# -- the stores themselves --------------------------------------------------------------------


async def test_write_read_delete(store: BlobStore) -> None:
    key = new_blob_key()
    await store.write(key, b"hello\r\n")
    assert await store.read(key) == b"hello\r\n"
    assert await store.delete([key]) == 1
    with pytest.raises(MessageNotFound):
        await store.read(key)
    assert await store.delete([]) == 0


async def test_draft_commit_keeps_a_readable_file_until_release(store: BlobStore) -> None:
    key = new_blob_key()
    draft = await store.open_draft(key, b"Received: x\r\n")
    await draft.write(b"a" * 300_000)
    await draft.write(b"end\r\n")
    await draft.commit()
    expected = b"Received: x\r\n" + b"a" * 300_000 + b"end\r\n"
    assert draft.size == len(expected)
    assert draft.path.read_bytes() == expected  # what the analysis worker reads
    await draft.release()
    assert await store.read(key) == expected
    await store.delete([key])


async def test_discarded_draft_leaves_nothing(store: BlobStore) -> None:
    key = new_blob_key()
    draft = await store.open_draft(key, b"partial")
    staged = draft.path
    assert staged.exists()
    await draft.discard()
    assert not staged.exists()
    assert not await _exists(store, key)


async def test_orphan_sweep_removes_only_old_unreferenced_blobs(
        store: BlobStore, engine: AsyncEngine) -> None:
    kept, orphan, young = new_blob_key(), new_blob_key(), new_blob_key()
    await store.write(kept, b"raw")
    await store.write(orphan, b"raw")
    async with engine.begin() as conn:
        await queries.insert_messages(conn, _records(kept, unique_inbox("sweep.test")))
    written = time.time()
    # S3 lists LastModified in whole seconds: leave a gap of several seconds between the
    # old blobs and the young one, and cut in between, 2 s after the old ones. The cut
    # moves on with the clock while the sweep runs: a busy sweep has 2 s before it could
    # take the young blob for an old one.
    await asyncio.sleep(5)
    await store.write(young, b"raw")
    min_age = time.time() - (written + 2)
    await sweep_orphans(engine, store, min_age=min_age)
    assert await _exists(store, kept)
    assert not await _exists(store, orphan)
    assert await _exists(store, young)  # too new: its commit may still be in flight
    await store.delete([kept, young])


async def test_s3_deletes_in_batches_of_at_most_1000(s3_server: LocalS3,
                                                     tmp_path: Path) -> None:
    store = s3_store(s3_server, tmp_path, f"batch-{uuid.uuid4().hex[:8]}/")
    await store.start()
    try:
        keys = [new_blob_key() for _ in range(1005)]
        for start in range(0, len(keys), 50):
            await asyncio.gather(*(store.write(k, b"x") for k in keys[start:start + 50]))
        listed = [k async for batch in store.old_keys(0) for k in batch]
        assert sorted(listed) == sorted(keys)  # listing pages (1000 a page) are followed
        assert await store.delete(keys) == 1005
        assert [k async for batch in store.old_keys(0) for k in batch] == []
    finally:
        await store.close()


# -- real nodes -------------------------------------------------------------------------------


def _node_env(request: pytest.FixtureRequest, backend: str) -> dict[str, str]:
    if backend == "s3":
        return dict(request.getfixturevalue("s3_endpoint"))
    return {"MAILSAC_BLOB_BACKEND": backend}


def _start_nodes(database_url: str, env: dict[str, str], n: int) -> list[ServerHandle]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: start_private_server(database_url, env,
                                                            "mailsac-test-blobs-"), range(n)))


@pytest.fixture(params=BACKENDS)
def nodes(request: pytest.FixtureRequest, database_url: str
          ) -> Iterator[tuple[str, list[ServerHandle]]]:
    """Two nodes on one shared store (postgres, s3), or one node (local)."""
    backend = request.param
    handles = _start_nodes(database_url, _node_env(request, backend),
                           1 if backend == "local" else 2)
    yield backend, handles
    for handle in handles:
        stop_private_server(handle)


def _send(node: ServerHandle, raw: bytes, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=60) as smtp:
        assert smtp.sendmail("sender@example.org", [to], raw) == {}


def _messages(node: ServerHandle, inbox: str) -> list[dict[str, str]]:
    response = httpx.get(f"{node.http_url}/api/addresses/{inbox}/messages",
                         headers={"Mailsac-Key": node.key}, timeout=30)
    assert response.status_code == 200
    result: list[dict[str, str]] = response.json()
    return result


def _raw(node: ServerHandle, inbox: str, message_id: str) -> bytes:
    response = httpx.get(f"{node.http_url}/api/raw/{inbox}/{message_id}",
                         headers={"Mailsac-Key": node.key}, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


async def _blob_key(engine: AsyncEngine, message_id: str) -> str:
    async with engine.connect() as conn:
        key = await conn.scalar(text("SELECT blob_key FROM messages WHERE id = :id"),
                                {"id": message_id})
    assert isinstance(key, str)
    return key


async def _inspector(backend: str, request: pytest.FixtureRequest, engine: AsyncEngine,
                     node: ServerHandle, staging: Path) -> BlobStore:
    """An in-process store looking at what ``node`` stores."""
    blobs: BlobStore
    if backend == "local":
        blobs = LocalBlobStore(node.data_dir / "blobs")
    elif backend == "postgres":
        blobs = PostgresBlobStore(engine, staging)
    else:
        blobs = s3_store(request.getfixturevalue("s3_server"), staging)
    await blobs.start()
    return blobs


async def test_mail_round_trip_across_nodes_and_delete(
        nodes: tuple[str, list[ServerHandle]], engine: AsyncEngine,
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend, handles = nodes
    first, second = handles[0], handles[-1]
    inbox = unique_inbox()
    small = make_message(inbox, subject="small one", body="short body")
    large = make_message(inbox, subject="large one", body="line of text\n" * 50_000)
    _send(first, small, inbox)  # in memory
    _send(second, large, inbox)  # > 256 KiB: streamed into a staged/temp file
    stored = {m["subject"]: m["_id"] for m in _messages(first, inbox)}
    assert set(stored) == {"small one", "large one"}
    # Each node reads what the other one stored (the same node for local).
    assert _raw(second, inbox, stored["small one"]).endswith(small)
    assert _raw(first, inbox, stored["large one"]).endswith(large)

    blobs = await _inspector(backend, request, engine, first, tmp_path)
    try:
        keys = [await _blob_key(engine, stored[s]) for s in ("small one", "large one")]
        assert (await blobs.read(keys[1])).endswith(large)
        for message_id in stored.values():
            response = httpx.delete(f"{second.http_url}/api/addresses/{inbox}/messages/"
                                    f"{message_id}", headers={"Mailsac-Key": second.key},
                                    timeout=30)
            assert response.status_code == 200
        for key in keys:
            assert not await _exists(blobs, key)  # deleting the message deleted its blob
    finally:
        await blobs.close()
    if backend != "local":
        assert not list((first.data_dir / "staging").iterdir())  # staging files released


def _refused_with_4xx(node: ServerHandle, raw: bytes, to: str) -> int:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=120) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail("sender@example.org", [to], raw)
    return int(info.value.smtp_code)


async def _count(engine: AsyncEngine, inbox: str) -> int:
    async with engine.connect() as conn:
        return await queries.count_inbox(conn, inbox)


async def test_s3_unavailable_gives_451_and_stores_nothing(database_url: str,
                                                          engine: AsyncEngine) -> None:
    s3 = LocalS3(bucket="mailsac-outage")
    s3.start()
    node = start_private_server(database_url, {**s3.env(), "MAILSAC_BLOB_TIMEOUT": "5",
                                               "MAILSAC_S3_CONNECT_TIMEOUT": "1"})
    try:
        inbox = unique_inbox()
        _send(node, make_message(inbox, subject="before"), inbox)
        s3.stop()
        assert _refused_with_4xx(node, make_message(inbox, subject="small"), inbox) == 451
        big = make_message(inbox, subject="big", body="spooled line\n" * 40_000)
        assert _refused_with_4xx(node, big, inbox) == 451
        assert await _count(engine, inbox) == 1  # only the message sent before the outage
        assert not list((node.data_dir / "staging").iterdir())
    finally:
        s3.stop()
        stop_private_server(node)


async def test_postgres_blob_store_unavailable_gives_451(database_url: str,
                                                        engine: AsyncEngine) -> None:
    """A blob insert that hangs (the table is locked) times out: 451, no message row."""
    node = start_private_server(database_url, {"MAILSAC_BLOB_BACKEND": "postgres",
                                               "MAILSAC_BLOB_TIMEOUT": "1"})
    locker = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        inbox = unique_inbox()
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE blob_objects IN ACCESS EXCLUSIVE MODE")
        try:
            code = await asyncio.to_thread(_refused_with_4xx, node,
                                           make_message(inbox, subject="locked"), inbox)
        finally:
            await transaction.rollback()
        assert code == 451
        assert await _count(engine, inbox) == 0
        _send(node, make_message(inbox, subject="after"), inbox)  # and it recovers
        assert await _count(engine, inbox) == 1
    finally:
        await locker.close()
        stop_private_server(node)
