"""What the cross-node NOTIFY costs at intake: metadata commits with and without it.

    .venv/bin/python benchmarks/notify_cost.py DATABASE_URL [--rows 20000] [--batches 1 10 100]

Runs the real group-commit path (:func:`mailsac.storage.messages.insert_messages`, binary
COPY in one transaction per batch) into a migrated database, alternating the
``messages_notify_stored`` trigger on and off (``ALTER TABLE … DISABLE TRIGGER``) with a
node LISTENing, for batch sizes as the writer forms them (1 under light load, ~100 under
a flood). Reports rows/s for each and the relative cost. Leaves the trigger enabled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text

from mailsac.storage.db import asyncpg_dsn, create_engine
from mailsac.storage.messages import MessageRecord, insert_messages
from mailsac.storage.notify import CHANNEL


def _records(count: int) -> list[MessageRecord]:
    now = datetime.now(UTC)
    return [MessageRecord(
        id=uuid.uuid4().hex, inbox=f"n{i % 500}@notify.test", original_inbox="x@notify.test",
        domain="notify.test", received=now, size=4096, blob_key=uuid.uuid4().hex,
        subject="cost", from_addrs=[{"address": "a@b.test", "name": ""}], to_addrs=[],
        cc_addrs=[], bcc_addrs=[], attachments=None, links=[], ip="127.0.0.1", via="",
        mail_from="a@b.test", message_id=None, folder="inbox", labels=[], read=False,
        rtls=False, saved_by=None, spam=None, account_id=None) for i in range(count)]


async def _run(url: str, rows: int, batch: int, enabled: bool) -> float:
    engine = create_engine(url)
    records = _records(rows)
    try:
        async with engine.begin() as conn:
            state = "ENABLE" if enabled else "DISABLE"
            await conn.execute(text(f"ALTER TABLE messages {state} TRIGGER "
                                    "messages_notify_stored"))
        started = time.perf_counter()
        for i in range(0, rows, batch):
            async with engine.begin() as conn:
                await insert_messages(conn, records[i:i + batch])
        seconds = time.perf_counter() - started
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM messages WHERE domain = 'notify.test'"))
            await conn.execute(text("ALTER TABLE messages ENABLE TRIGGER messages_notify_stored"))
        return rows / seconds
    finally:
        await engine.dispose()


async def main_async(url: str, rows: int, batches: list[int], rounds: int) -> dict[str, object]:
    listener = await asyncpg.connect(asyncpg_dsn(url))
    received = [0]
    await listener.add_listener(CHANNEL, lambda *_: received.__setitem__(0, received[0] + 1))
    report: dict[str, object] = {}
    try:
        for batch in batches:
            on: list[float] = []
            off: list[float] = []
            for k in range(rounds):  # alternate, so drift on a busy machine hits both
                for enabled in ((True, False) if k % 2 == 0 else (False, True)):
                    (on if enabled else off).append(await _run(url, rows, batch, enabled))
            with_notify, without = statistics.median(on), statistics.median(off)
            report[f"batch_{batch}"] = {
                "rows_per_s_with_notify": round(with_notify),
                "rows_per_s_without": round(without),
                "cost_pct": round(100 * (without - with_notify) / without, 1)}
    finally:
        await listener.close()
    report["notifications_received"] = received[0]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rows = args.rows
    print(json.dumps(asyncio.run(main_async(args.database_url, rows, args.batches,
                                            args.rounds)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
