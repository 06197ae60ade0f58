"""Retention at scale: how long a retention pass takes over millions of message rows.

    .venv/bin/python benchmarks/retention_scale.py [--rows 1000000 5000000] [--expired 0.5]
                                                   [--json] [--keep DIR] [--impl FILE]

For each size, a fresh scratch database on an embedded PostgreSQL (durable defaults:
fsync on) is migrated and seeded with ``INSERT … SELECT generate_series`` (triggers off
while seeding): public rows in inboxes of ~5 messages (under the per-inbox limit), with
``--expired`` of them older than the 4-day public maximum age; one row in 100 goes to
"hot" inboxes of 10 messages each (over the limit). Then the real
:class:`~mailsac.storage.retention.RetentionSweeper` (or the one in ``--impl``, to
compare with another version of ``retention.py``) runs:

- pass 1 (after a start-up: the chunked grouped scan trims the hot inboxes, then expiry
  deletes the old rows, each batch one transaction with its notification and webhook
  triggers), while a separate thread inserts one row per 20 ms (with its NOTIFY) and
  records each insert's latency, compared with the same stream before the pass,
- pass 2 (steady state: nothing to do), pass 3 (a grouped scan over what is left),
- and, for comparison, the same rows deleted by one bare ``DELETE`` (triggers off),
  rolled back, to tell what the deletion itself costs.

Reported: seconds per pass, deleted rows/s, transactions and the longest one, the
largest ``drop_blobs`` call, insert latency p50/p99/max, table size before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

from mailsac.storage import retention
from mailsac.storage.db import asyncpg_dsn, create_engine, ensure_database, run_migrations
from mailsac.storage.embedded import EmbeddedPostgres

SEED = """
INSERT INTO messages (id, inbox, original_inbox, domain, received, size, blob_key, subject)
SELECT 'm' || i, inbox, inbox, 'scale.test',
       now() - (i % 997) * interval '1 minute'
             - CASE WHEN i % 1000 < $2::float8 * 1000 THEN interval '5 days'
                    ELSE interval '0' END,
       4096, 'blob' || i, 'subject ' || i
  FROM generate_series(1, $1::int) AS i,
       LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 'hot' || (i / 1000)
                            ELSE 'box' || (i / 5) END || '@scale.test' AS inbox) AS b
"""
INSERT = ("INSERT INTO messages (id, inbox, original_inbox, domain, received, size, blob_key)"
          " VALUES ($1, 'live@scale.test', 'live@scale.test', 'scale.test', now(), 1, $1)")


async def _seed(dsn: str, rows: int, expired: float) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(SEED, rows, expired)
        await conn.execute("SET session_replication_role = origin")
        await conn.execute("VACUUM ANALYZE messages")
        seeded = time.perf_counter() - started
        size = await conn.fetchval("SELECT pg_total_relation_size('messages')")
        return {"seed_seconds": round(seeded, 1), "table_mb": round(size / 2**20, 1)}
    finally:
        await conn.close()


async def _bare_delete(dsn: str) -> dict[str, float]:
    """The deletion alone: one DELETE of the expired rows, rolled back."""
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SET LOCAL session_replication_role = replica")
        started = time.perf_counter()
        status = await conn.execute(
            "DELETE FROM messages WHERE account_id IS NULL AND saved_by IS NULL "
            "AND received < now() - interval '4 days'")
        seconds = time.perf_counter() - started
        await tx.rollback()
        deleted = int(status.split()[-1])
        return {"bare_delete_rows": deleted, "bare_delete_seconds": round(seconds, 2),
                "bare_delete_rows_per_s": round(deleted / seconds)}
    finally:
        await conn.close()


class InsertStream:
    """Another writer (as another node would be): one committed INSERT per ``period``,
    on its own thread, event loop and connection; records each insert's latency."""

    def __init__(self, dsn: str, period: float = 0.02) -> None:
        self.dsn, self.period = dsn, period
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.perf_counter()
                await conn.execute(INSERT, f"live-{time.time_ns()}-{n}")
                self.latencies.append(time.perf_counter() - started)
                await asyncio.sleep(self.period)
        finally:
            await conn.close()

    def __enter__(self) -> InsertStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        ms = sorted(x * 1000 for x in self.latencies)
        if not ms:
            return {}
        return {"inserts": len(ms), "p50_ms": round(statistics.median(ms), 1),
                "p99_ms": round(ms[int(len(ms) * 0.99) - 1 if len(ms) > 1 else 0], 1),
                "max_ms": round(ms[-1], 1)}


async def _measure(url: str, rows: int, expired: float, impl: ModuleType) -> dict[str, Any]:
    dsn = asyncpg_dsn(url)
    report: dict[str, Any] = {"rows": rows, **await _seed(dsn, rows, expired)}
    report.update(await _bare_delete(dsn))
    engine = create_engine(url)
    biggest_drop = 0

    async def no_blobs(keys: list[str]) -> None:
        nonlocal biggest_drop
        biggest_drop = max(biggest_drop, len(keys))

    sweeper = impl.RetentionSweeper(engine, no_blobs, impl.RetentionPolicy(), lock_key=None)
    with InsertStream(dsn) as idle:
        await asyncio.sleep(3)
    report["inserts_idle"] = idle.summary()
    try:
        for name in ("pass1", "pass2", "pass3"):
            if name == "pass3":
                sweeper._full_scan = True  # what a restart or an overflowing dirty set does
            stream = InsertStream(dsn)
            started = time.perf_counter()
            try:
                with stream:
                    result = await sweeper.sweep_once()
            except Exception as exc:  # e.g. a transaction over the 2.5 s database timeout
                report[name] = {"failed": f"{type(exc).__name__}: {exc}",
                                "seconds": round(time.perf_counter() - started, 2)}
                continue
            seconds = time.perf_counter() - started
            report[name] = {"seconds": round(seconds, 2), "expired": result.expired,
                            "over_inbox_limit": result.over_inbox_limit,
                            "rows_per_s": round(result.total / seconds) if result.total else 0,
                            "transactions": getattr(result, "transactions", None),
                            "peak_transaction_s": round(getattr(result, "peak_transaction", 0), 3),
                            "scan_complete": getattr(result, "scan_complete", None)}
            if name == "pass1":
                report[name]["inserts"] = stream.summary()
    finally:
        await engine.dispose()
    report["largest_drop_blobs_call"] = biggest_drop
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT pg_total_relation_size('messages')")
        report["table_mb_after"] = round(size / 2**20, 1)
    finally:
        await conn.close()
    return report


def _load(path: Path | None) -> ModuleType:
    if path is None:
        return retention
    spec = importlib.util.spec_from_file_location("retention_impl", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--expired", type=float, default=0.5,
                        help="share of rows older than the public maximum age")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the database directory here")
    parser.add_argument("--impl", type=Path, help="another retention.py to measure")
    args = parser.parse_args()
    impl = _load(args.impl)
    directory = str(args.keep) if args.keep else tempfile.mkdtemp(prefix="mailsac-retention-")
    server = EmbeddedPostgres(directory)  # durable defaults: fsync on
    server.start()
    results = []
    try:
        for rows in args.rows:
            url = server.url(f"retention_{rows}")
            asyncio.run(ensure_database(url))
            run_migrations(url)
            result = asyncio.run(_measure(url, rows, args.expired, impl))
            results.append(result)
            if not args.json:
                print(json.dumps(result), flush=True)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
