"""Retention against the real PostgreSQL with an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.delivery import new_message_id
from mailsac.storage import MessageRecord, new_blob_key
from mailsac.storage import accounts as account_store
from mailsac.storage import messages as queries
from mailsac.storage.db import create_engine
from mailsac.storage.retention import EXPIRY_REWALK, RetentionPolicy, RetentionSweeper
from tests.helpers import database_of_its_own

NOW = 2_000_000_000.0  # a fixed "now" for the injected clock


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # A database of its own: these sweeps delete mail database-wide (public mail of every
    # server) and time their full scans, which the session's shared tables would slow.
    url = await asyncio.to_thread(database_of_its_own, database_url, "mailsac_retention")
    eng = create_engine(url, pool_size=2)
    yield eng
    await eng.dispose()


def record(inbox: str, age: timedelta, *, account: str | None = None,
           saved_by: str | None = None) -> MessageRecord:
    return MessageRecord(
        id=new_message_id(), inbox=inbox, original_inbox=inbox, domain=inbox.split("@")[1],
        received=datetime.fromtimestamp(NOW, UTC) - age, size=10, blob_key=new_blob_key(),
        subject="s", from_addrs=[], to_addrs=[], cc_addrs=[], bcc_addrs=[], attachments=None,
        links=[], ip="", via="", mail_from="", message_id=None, folder="inbox", labels=[],
        read=False, rtls=False, saved_by=saved_by, spam=None, account_id=account)


class Dropped:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def __call__(self, keys: list[str]) -> None:
        self.keys += keys


async def _store(engine: AsyncEngine, records: list[MessageRecord]) -> None:
    async with engine.begin() as conn:
        await queries.insert_messages(conn, records)


async def _ids(engine: AsyncEngine, inbox: str) -> list[str]:
    async with engine.connect() as conn:
        return [r.id for r in await queries.list_inbox(conn, inbox, limit=1000)]


def _sweeper(engine: AsyncEngine, dropped: Dropped, **policy: float) -> RetentionSweeper:
    return RetentionSweeper(engine, dropped, RetentionPolicy(**policy),  # type: ignore[arg-type]
                            clock=lambda: NOW)


async def test_public_inbox_keeps_newest_six_and_starred(engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    records = [record(inbox, timedelta(minutes=n)) for n in range(10)]
    starred = record(inbox, timedelta(hours=1), saved_by="someone")
    await _store(engine, [*records, starred])
    dropped = Dropped()
    sweeper = _sweeper(engine, dropped)
    sweeper.touched(records)
    report = await sweeper.sweep_once()
    assert report.over_inbox_limit >= 4
    kept = await _ids(engine, inbox)
    assert kept == [r.id for r in records[:6]] + [starred.id]
    assert set(dropped.keys) >= {r.blob_key for r in records[6:]}


async def test_public_mail_older_than_four_days_expires(engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    fresh = record(inbox, timedelta(days=3, hours=23))
    old = record(inbox, timedelta(days=4, minutes=1))
    old_starred = record(inbox, timedelta(days=30), saved_by="acct")
    private_old = record(f"p{inbox}", timedelta(days=30), account="default")
    await _store(engine, [fresh, old, old_starred, private_old])
    sweeper = _sweeper(engine, Dropped())
    await sweeper.sweep_once()
    assert await _ids(engine, inbox) == [fresh.id, old_starred.id]
    assert await _ids(engine, f"p{inbox}") == [private_old.id]


async def test_account_message_limit_recycles_oldest_non_starred(engine: AsyncEngine) -> None:
    account = f"ret-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await account_store.create_account(conn, account, message_limit=3)
    inbox = f"priv@{account}.test"
    starred_old = record(inbox, timedelta(days=9), account=account, saved_by=account)
    others = [record(inbox, timedelta(days=n), account=account) for n in range(5)]
    await _store(engine, [starred_old, *others])
    sweeper = _sweeper(engine, Dropped())
    sweeper.touched(others)
    report = await sweeper.sweep_once()
    assert report.over_account_limit == 3
    # The starred one counts towards the limit but is never recycled.
    assert await _ids(engine, inbox) == [others[0].id, others[1].id, starred_old.id]


async def test_full_scan_after_restart_finds_overfull_inboxes(engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    await _store(engine, [record(inbox, timedelta(minutes=n)) for n in range(8)])
    sweeper = _sweeper(engine, Dropped(), public_inbox_limit=2)  # never told about them
    await sweeper.sweep_once()
    assert len(await _ids(engine, inbox)) == 2


async def test_dirty_set_is_bounded(engine: AsyncEngine) -> None:
    sweeper = _sweeper(engine, Dropped())
    sweeper._full_scan = False
    sweeper.touched(record(f"x{n}@flood.test", timedelta()) for n in range(60_000))
    assert sweeper._full_scan is True
    assert len(sweeper._public_inboxes) < 60_000


async def test_hot_queries_use_indexes(engine: AsyncEngine) -> None:
    plans = {
        "ix_messages_account_received":
            "SELECT id FROM messages WHERE account_id = 'a' ORDER BY received DESC LIMIT 20",
        "ix_messages_public_received":
            "SELECT id FROM messages WHERE account_id IS NULL AND saved_by IS NULL "
            "AND received < now() ORDER BY received LIMIT 500",
        "ix_messages_domain_received":
            "SELECT id FROM messages WHERE domain = 'd.test' ORDER BY received DESC LIMIT 20",
        "ix_messages_saved_by":
            "SELECT id FROM messages WHERE saved_by = 'a' ORDER BY received DESC LIMIT 20",
    }
    async with engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        for index, query in plans.items():
            plan = "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + query)))
            assert index in plan, plan


class Calls(Dropped):
    """Records every drop_blobs call, to check they are bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def __call__(self, keys: list[str]) -> None:
        self.sizes.append(len(keys))
        await super().__call__(keys)


async def test_scan_that_times_out_resumes_at_the_next_pass(engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    records = [record(inbox, timedelta(minutes=n)) for n in range(9)]
    await _store(engine, records)
    # Never told about the inbox, and every scan chunk times out at once.
    sweeper = _sweeper(engine, Dropped())
    sweeper.policy = replace(sweeper.policy, scan_timeout=1e-9)
    report = await sweeper.sweep_once()
    assert report.scan_complete is False
    assert sweeper.scan_pending
    assert len(await _ids(engine, inbox)) == 9  # not trimmed yet ...
    sweeper.policy = replace(sweeper.policy, scan_timeout=5.0)
    report = await sweeper.sweep_once()
    assert report.scan_complete is True
    assert not sweeper.scan_pending
    assert await _ids(engine, inbox) == [r.id for r in records[:6]]  # ... but not skipped


async def test_scan_in_small_chunks_finds_every_overfull_inbox(engine: AsyncEngine) -> None:
    inboxes = [f"r{uuid.uuid4().hex[:8]}-{n}@retention.test" for n in range(5)]
    await _store(engine, [record(box, timedelta(minutes=m)) for box in inboxes
                          for m in range(8)])
    sweeper = _sweeper(engine, Dropped(), scan_rows=3)  # many chunks, keyset-paginated
    report = await sweeper.sweep_once()
    assert report.scan_complete is True
    for box in inboxes:
        assert len(await _ids(engine, box)) == 6


async def test_trimming_many_inboxes_in_large_and_small_batches(engine: AsyncEngine) -> None:
    for batch in (7, 50_000):
        tag = uuid.uuid4().hex[:8]
        sizes = {f"big{tag}@retention.test": 300, f"mid{tag}@retention.test": 7,
                 f"few{tag}@retention.test": 3}
        public = {box: [record(box, timedelta(seconds=s)) for s in range(n)]
                  for box, n in sizes.items()}
        big = f"big{tag}@retention.test"
        starred = record(big, timedelta(days=1), saved_by="acct")
        private = record(big, timedelta(days=2), account="default")
        await _store(engine, [*(r for rs in public.values() for r in rs), starred, private])
        calls = Calls()
        sweeper = _sweeper(engine, calls, batch=batch, max_batch=batch, blob_batch=40)
        sweeper._full_scan = False
        sweeper.touched(r for rs in public.values() for r in rs)
        report = await sweeper.sweep_once()
        assert report.over_inbox_limit == 294 + 1
        assert await _ids(engine, big) == [r.id for r in public[big][:6]] + [
            starred.id, private.id]
        for box, rs in public.items():
            if box != big:
                assert await _ids(engine, box) == [r.id for r in rs[:6]]
        gone = {r.blob_key for rs in public.values() for r in rs[6:]}
        assert set(calls.keys) == gone and len(calls.keys) == len(gone)
        assert max(calls.sizes) <= 40


async def test_expiry_in_key_ranges_with_ties_and_shared_blobs(engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    # 30 expired rows with only 3 distinct times: batch boundaries fall inside ties.
    old = [record(inbox, timedelta(days=5, minutes=n % 3)) for n in range(30)]
    fresh = record(inbox, timedelta(hours=1))
    # A private copy of the first (one blob, two rows) keeps the blob alive.
    shared = replace(record(f"p{inbox}", timedelta(days=9), account="default"),
                     blob_key=old[0].blob_key)
    await _store(engine, [*old, fresh, shared])
    calls = Calls()
    sweeper = _sweeper(engine, calls, batch=4, max_batch=4)
    sweeper._full_scan = False
    report = await sweeper.sweep_once()
    assert report.expired >= 30
    assert report.transactions >= 3  # one key range per distinct time at least
    assert await _ids(engine, inbox) == [fresh.id]
    assert await _ids(engine, f"p{inbox}") == [shared.id]
    assert old[0].blob_key not in calls.keys
    assert {r.blob_key for r in old[1:]} <= set(calls.keys)


async def test_mail_made_public_behind_the_expiry_mark_expires_later(
        engine: AsyncEngine) -> None:
    inbox = f"r{uuid.uuid4().hex[:8]}@retention.test"
    await _store(engine, [record(inbox, timedelta(days=5))])
    sweeper = _sweeper(engine, Dropped())
    sweeper._full_scan = False
    await sweeper.sweep_once()  # leaves its mark at that message's time
    starred = record(inbox, timedelta(days=6), saved_by="acct")
    await _store(engine, [starred])
    async with engine.begin() as conn:  # unstarred: public, and older than the mark
        await queries.update_message(conn, starred.id, saved_by=None)
    for _ in range(EXPIRY_REWALK):
        await sweeper.sweep_once()
    assert await _ids(engine, inbox) == []
