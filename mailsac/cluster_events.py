"""Other nodes' message changes, fed to this node's hub: cross-node real-time.

Every commit that stores or deletes message rows announces their ids on the
``mailsac_messages`` channel (a database trigger, see :mod:`mailsac.storage.notify`). Each
node LISTENs on a dedicated connection and turns what other nodes did into the same hub
events its own delivery publishes, so WebSocket, SSE and long-poll waiters here hear of
mail that arrived anywhere, with no change to any subscriber.

- Stored rows are loaded in one query per drained batch, and only those some local
  subscriber watches (most nodes watch few inboxes; nobody pays for the rest).
- Deletions are published from every node, this one included: purge, release and
  retention delete rows without publishing anything themselves.
- The callback only queues (bounded); one worker drains, loads and publishes.
- A lost connection is re-opened with backoff. Then, and after a queue overflow, the
  worker catches up: rows received since shortly before the gap in watched inboxes are
  published (the hub's memory of recent ids skips those already seen), and watched
  inboxes get a deletion signal so pages re-read their lists.
- Every stored row (not just watched ones) of a node of the same service
  (``MAILSAC_CLUSTER``) is reported to ``touched`` (retention's dirty set), so whichever
  node holds the service's retention lock knows what every node stored. Other services
  sharing the database keep their own retention (and their own settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.directory import Directory, domain_of
from mailsac.events import MessageDeleted, MessageStored
from mailsac.forwarding.hub import MessageHub
from mailsac.node import NODE_ID
from mailsac.storage import notify
from mailsac.storage.db import asyncpg_dsn, connect
from mailsac.storage.messages import MessageRecord

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # notifications (each up to ~8 KB) waiting for the worker
DRAIN = 200  # notifications handled per worker round (one load query)
CATCH_UP_MARGIN = timedelta(seconds=5)  # clock skew between nodes, commit delays
CATCH_UP_LIMIT = 2000
PING_INTERVAL = 5.0  # an idle LISTEN connection is checked this often
MAX_BACKOFF = 10.0


class ClusterEvents:
    """The per-node listener: ``mailsac_messages`` notifications → local hub events."""

    def __init__(self, engine: AsyncEngine, database_url: str, hub: MessageHub,
                 directory: Directory, *,
                 touched: Callable[[Iterable[tuple[str, str | None]]], None] | None = None,
                 cluster: str = "", queue_size: int = QUEUE_SIZE) -> None:
        self._engine = engine
        self._dsn = asyncpg_dsn(database_url)
        self._hub = hub
        self._directory = directory
        self._touched = touched
        self._cluster = cluster
        self._queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(queue_size)
        self._gap_since: datetime | None = None  # notifications may have been missed
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False
        self.received = 0  # notifications
        self.published = 0  # events handed to the hub
        self.overflows = 0
        self.reconnects = 0
        self.latency = 0.0  # last notification-to-publish delay on this node (seconds)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(), name="cluster-listener"),
                       asyncio.create_task(self._work(), name="cluster-events")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- the LISTEN connection ------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.received += 1
        try:
            self._queue.put_nowait((time.monotonic(), payload))
        except asyncio.QueueFull:
            self.overflows += 1
            self._mark_gap()

    def _mark_gap(self) -> None:
        if self._gap_since is None:
            self._gap_since = datetime.now(UTC)

    async def _follow(self) -> None:
        backoff = 0.5
        first = True
        while True:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(notify.CHANNEL, self._on_notify)
                self.listening, backoff = True, 0.5
                if not first:
                    self.reconnects += 1
                    with contextlib.suppress(asyncio.QueueFull):  # full: it catches up anyway
                        self._queue.put_nowait((time.monotonic(), ""))  # "" = catch up now
                first = False
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PING_INTERVAL):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(PING_INTERVAL):
                            await conn.execute("SELECT 1")
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening or first:
                    log.warning("cluster listener lost (%s); reconnecting", exc)
                self.listening = False
                if not first:
                    self._mark_gap()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    # -- the worker -----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < DRAIN and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: catch up once it is back
                log.warning("cluster events not loaded (%s); will catch up", exc)
                self._mark_gap()
            if self._gap_since is not None and self.listening:
                await self._catch_up()

    async def _handle(self, batch: list[tuple[float, str]]) -> None:
        """Publish one drained batch in order: one query loads every watched stored row."""
        changes = [(at, change) for at, payload in batch
                   if payload and (change := notify.parse(payload)) is not None]
        wanted: list[str] = []
        for _, change in changes:
            if not change.stored or change.node == NODE_ID:
                continue
            if self._touched is not None and change.cluster == self._cluster:
                self._touched((item.inbox, item.account_id) for item in change.items)
            wanted.extend(item.id for item in change.items
                          if not self._hub.seen(item.id) and self._hub.wants(
                              self._directory.notify_addresses(item.inbox),
                              domain_of(item.inbox), item.account_id))
        loaded: dict[str, MessageRecord] = {}
        if wanted:
            async with connect(self._engine) as conn:
                loaded = {r.id: r for r in await notify.load(conn, wanted)}
        for at, change in changes:
            for item in change.items:
                if not change.stored:
                    self._publish_deleted(item.id, item.inbox)
                elif (record := loaded.pop(item.id, None)) is not None:
                    self._publish_stored(record)
            self.latency = time.monotonic() - at

    def _publish_stored(self, record: MessageRecord) -> None:
        if self._hub.seen(record.id):
            return
        self.published += 1
        self._hub.publish(MessageStored(
            record, self._directory.notify_addresses(record.inbox)))

    def _publish_deleted(self, message_id: str, inbox: str) -> None:
        if self._hub.wants((inbox,), ""):
            self.published += 1
            self._hub.publish(MessageDeleted(message_id, inbox))

    async def _catch_up(self) -> None:
        """After a gap: publish what watched inboxes received meanwhile, and tell them
        something may have been deleted (an SSE page then re-reads its list)."""
        since, self._gap_since = self._gap_since, None
        assert since is not None
        inboxes, domains = self._hub.watched()
        try:
            async with connect(self._engine) as conn:
                records = await notify.received_since(conn, since - CATCH_UP_MARGIN, inboxes,
                                                      domains, CATCH_UP_LIMIT,
                                                      self._hub.watched_accounts())
        except Exception as exc:
            log.warning("cluster catch-up failed (%s); will retry", exc)
            self._gap_since = since
            return
        for record in records:
            self._publish_stored(record)
        for inbox in inboxes:
            self._publish_deleted("", inbox)
        log.info("cluster listener caught up: %d message(s) since %s", len(records),
                 since.isoformat())
