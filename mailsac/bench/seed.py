"""Bulk-load a large store: COPY rows straight into ``messages``, all sharing one blob.

Scenario (d) needs a store holding a million messages; sending them over SMTP would take
longer than the benchmark itself. Rows are generated here and streamed with asyncpg's
binary ``COPY`` over a few connections in parallel (the table keeps all its indexes, so
the store looks exactly like one filled by SMTP), then the table is ``ANALYZE``-d. Every
row points at one real blob file, so raw/body endpoints work for seeded messages too.

Inboxes follow a power law, as on a busy disposable-mail host: a handful of CI inboxes
hold tens of thousands of messages, most inboxes hold one to five.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from mailsac.bench.http_probe import ProbeTarget
from mailsac.bench.workload import RECIPIENT_DOMAINS, SizeMix, Workload
from mailsac.storage.blobs import BlobStore, new_blob_key
from mailsac.storage.blobs_local import LocalBlobStore

COLUMNS = ("id", "inbox", "original_inbox", "domain", "received", "size", "blob_key", "subject",
           "from_addrs", "to_addrs", "links", "ip", "via", "mail_from", "message_id")
SPREAD_SECONDS = 72 * 3600  # received times spread over the last three days


@dataclass
class SeedResult:
    rows: int = 0
    seconds: float = 0.0
    analyze_seconds: float = 0.0
    inboxes: int = 0
    workers: int = 0
    blob_key: str = ""
    targets: list[ProbeTarget] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": round(self.seconds, 1),
                "rows_per_s": round(self.rows / self.seconds) if self.seconds else None,
                "analyze_seconds": round(self.analyze_seconds, 1), "inboxes": self.inboxes,
                "workers": self.workers}


def inbox_rank(u: float, inboxes: int) -> int:
    """Power-law inbox choice from a uniform ``u`` in [0, 1): rank 0 is the busiest."""
    return min(inboxes - 1, int(inboxes * u ** 3))


class RowFactory:
    """Generates ``messages`` rows for seeding (deterministic per seed)."""

    def __init__(self, run_id: str, inboxes: int, blob_key: str, size: int, seed: int = 0,
                 now: float | None = None) -> None:
        self.run_id, self.inboxes, self.blob_key, self.size = run_id, inboxes, blob_key, size
        self.seed = seed
        self.now_ms = int((now if now is not None else time.time()) * 1000)
        rnd = random.Random(seed)
        sample = Workload(run_id, 1000, SizeMix.parse("4k"), seed=seed)
        self._subjects = [sample.message(i).header.split(b"Subject: ")[1].split(b" [")[0]
                          .decode() for i in range(200)]
        self._senders = [sample.sender(i) for i in range(1000)]
        self._links = [f'["https://shop{n}.example/track?id={rnd.getrandbits(32):08x}"]'
                       for n in range(100)]

    def inbox(self, rank: int) -> str:
        return f"s{self.run_id}x{rank}@{RECIPIENT_DOMAINS[rank % len(RECIPIENT_DOMAINS)]}"

    def rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        rnd = random.Random(self.seed * 7_919 + start)
        out: list[tuple[Any, ...]] = []
        now_ms, spread_ms = self.now_ms, SPREAD_SECONDS * 1000
        for n in range(start, stop):
            rank = inbox_rank(rnd.random(), self.inboxes)
            inbox = self.inbox(rank)
            sender = self._senders[n % len(self._senders)]
            received = datetime.fromtimestamp((now_ms - rnd.randrange(spread_ms)) / 1000, UTC)
            out.append((
                f"{rnd.getrandbits(80):020x}-0", inbox, inbox, inbox.partition("@")[2],
                received, self.size, self.blob_key, self._subjects[n % len(self._subjects)],
                f'[{{"name": "", "address": "{sender}"}}]',
                f'[{{"name": "", "address": "{inbox}"}}]',
                self._links[n % len(self._links)], "127.0.0.1", "127.0.0.1", sender,
                f"<seed{n}.{self.run_id}@bench.test>",
            ))
        return out


async def write_blob(blobs: Path | BlobStore, raw: bytes) -> str:
    """Store ``raw`` as one durable blob (in a local blob dir, or any started store);
    return its key."""
    store = LocalBlobStore(blobs) if isinstance(blobs, Path) else blobs
    key = new_blob_key()
    await store.write(key, raw)
    return key


async def seed_store(
    dsn: str, blob_dir: Path | BlobStore, count: int, *, run_id: str, inboxes: int | None = None,
    workers: int = 4, batch: int = 20_000, seed: int = 0, sample_every: int = 500,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """COPY ``count`` rows into ``messages`` over ``workers`` connections; then ANALYZE."""
    inboxes = inboxes or max(1, count // 10)
    sample = Workload(run_id, 1, SizeMix.parse("4k"), seed=seed).message(0)
    blob_key = await write_blob(blob_dir, sample.raw)
    factory = RowFactory(run_id, inboxes, blob_key, sample.size, seed)
    result = SeedResult(inboxes=inboxes, workers=workers, blob_key=blob_key)
    started = time.monotonic()
    chunks = iter(range(0, count, batch))

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for start in chunks:
                rows = factory.rows(start, min(count, start + batch))
                result.targets += [ProbeTarget(r[1], r[0]) for r in rows[::sample_every]]
                await conn.copy_records_to_table("messages", records=rows, columns=COLUMNS)
                result.rows += len(rows)
                if progress is not None:
                    progress(result.rows)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    result.seconds = time.monotonic() - started
    conn = await asyncpg.connect(dsn)
    try:
        analyzed = time.monotonic()
        await conn.execute("ANALYZE messages")
        result.analyze_seconds = time.monotonic() - analyzed
    finally:
        await conn.close()
    return result
