"""The background task that shares throttle counts between the nodes of a cluster.

Once per ``interval`` it writes this node's heavy keys (:meth:`SharedCounts.outgoing`) to the
``throttle_shared`` table, reads the other nodes' live counts of the same cluster back
(:meth:`SharedCounts.merge`), and now and then deletes expired rows. It runs on its own
asyncpg connection, never in an SMTP command: decisions only read the in-memory view, so a
slow or unavailable database can only make that view older. After
:data:`~mailsac.throttle.shared.STALE_SYNCS` failed intervals the view is dropped and every
node limits on its own counts (fail-open; logged once per outage, counted in ``/metrics``).
Consistency and bounds: :mod:`mailsac.throttle.shared`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailsac.node import NODE_ID
from mailsac.storage import shared_throttle as store
from mailsac.storage.db import asyncpg_dsn
from mailsac.throttle.shared import STALE_SYNCS, CountRow, SharedCounts

log = logging.getLogger(__name__)

MAX_READ_ROWS = 10_000  # rows read per sync
PURGE_EVERY = 10  # syncs between deletions of expired rows
PURGE_AFTER = 10.0  # seconds after expiry a row is deleted (slack for clock skew)


@dataclass(slots=True)
class SyncStats:
    """Plain numbers for ``/metrics``."""

    ok: int = 0
    failed: int = 0
    rows_written: int = 0
    rows_read: int = 0
    seconds: float = 0.0
    available: bool = True


class ThrottleSync:
    """Shares ``shared`` with the other nodes of ``cluster`` every ``interval`` seconds."""

    def __init__(self, shared: SharedCounts, database_url: str, cluster: str,
                 interval: float, *, node: str = NODE_ID, timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.cluster = cluster
        self.interval = interval
        self.node = node
        self.timeout = timeout if timeout is not None else max(2.0, 2 * interval)
        self.stats = SyncStats()
        self._dsn = asyncpg_dsn(database_url)
        self._clock = clock
        self._conn: Any = None
        self._last_ok = clock()
        self._syncs = 0

    async def run(self) -> None:
        """Sync forever (cancel to stop)."""
        try:
            while True:
                await self.sync_once()
                await asyncio.sleep(self.interval)
        finally:
            await self._drop()

    async def sync_once(self) -> bool:
        """One write + read (+ purge); False if the database did not answer in time."""
        started = self._clock()
        rows = self.shared.outgoing()
        try:
            async with asyncio.timeout(self.timeout):
                read = await self._exchange(rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.seconds += self._clock() - started
            await self._failed(rows, exc)
            return False
        self.shared.committed(rows)
        self.shared.merge(read)
        self.stats.ok += 1
        self.stats.rows_written += len(rows)
        self.stats.rows_read += len(read)
        self.stats.seconds += self._clock() - started
        self._last_ok = self._clock()
        if not self.stats.available:
            log.info("throttle sharing restored: limits count the whole cluster again")
            self.stats.available = True
        return True

    async def _exchange(self, rows: list[CountRow]) -> list[CountRow]:
        if self._conn is None:
            self._conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
        conn = self._conn
        await store.push(conn, self.cluster, self.node, [
            (r.namespace, r.key_hash, r.bucket, r.count, r.ends_at, r.expires_at)
            for r in rows])
        now = self.shared.clock()
        read = await store.pull(conn, self.cluster, self.node, now, MAX_READ_ROWS)
        self._syncs += 1
        if self._syncs % PURGE_EVERY == 1:
            await store.purge(conn, now - PURGE_AFTER)
        return [CountRow(*row) for row in read]

    async def _failed(self, rows: list[CountRow], exc: BaseException) -> None:
        await self._drop()
        self.shared.requeue(rows)
        self.stats.failed += 1
        stale = self._clock() - self._last_ok > STALE_SYNCS * max(self.interval, 1.0)
        if stale:
            self.shared.clear_remote()
        if self.stats.available and stale:
            self.stats.available = False
            log.warning("throttle sharing unavailable (%s): limiting on this node's counts "
                        "only until the database answers", type(exc).__name__)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
