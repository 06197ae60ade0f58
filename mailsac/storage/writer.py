"""Group commit for message metadata.

Each accepted SMTP transaction needs its rows committed before ``250`` is sent. A commit
per message caps intake near the disk's flush rate (roughly 1,000/s here), so concurrent
deliveries hand their rows to one writer task that inserts everything queued so far in a
single transaction and then wakes every waiter. Under light load a batch is one message
(no added latency); under a flood batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import StorageUnavailable
from mailsac.storage.db import is_unavailable
from mailsac.storage.journal import Journal
from mailsac.storage.messages import MessageRecord, insert_messages
from mailsac.storage.webhooks import NewDelivery, insert_deliveries

log = logging.getLogger(__name__)

MAX_BATCH_ROWS = 1000
DB_WRITE_TIMEOUT = 10.0  # then the batch goes to the outage journal (if configured)


@dataclass
class _Pending:
    records: Sequence[MessageRecord]
    deliveries: Sequence[NewDelivery]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MetadataWriter:
    """Commits message rows in batches; :meth:`insert` returns once they are durable."""

    def __init__(self, engine: AsyncEngine, journal: Journal | None = None) -> None:
        self._engine = engine
        self.journal = journal
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0
        self.commit_seconds = 0.0

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metadata-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def insert(
        self, records: Sequence[MessageRecord], deliveries: Sequence[NewDelivery] = ()
    ) -> None:
        """Queue ``records`` (and their webhook deliveries) and wait until committed."""
        if self._task is None:
            raise StorageUnavailable("the metadata writer is not running")
        pending = _Pending(records, deliveries)
        self._queue.put_nowait(pending)
        await asyncio.shield(pending.done)

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            rows = len(first.records)
            while rows < MAX_BATCH_ROWS and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                rows += len(item.records)
            await self._commit(batch)
            for _ in batch:
                self._queue.task_done()

    async def _journal(self, records: list[MessageRecord],
                       deliveries: list[NewDelivery]) -> BaseException | None:
        assert self.journal is not None
        try:
            await self.journal.append(records, deliveries)
        except StorageUnavailable as exc:
            return exc
        return None

    async def _commit(self, batch: list[_Pending]) -> None:
        records = [r for item in batch for r in item.records]
        deliveries = [d for item in batch for d in item.deliveries]
        error: BaseException | None = None
        started = time.perf_counter()
        if self.journal is not None and self.journal.pending:
            # Keep arrival order: nothing goes to the database before the journal drained.
            self._settle(batch, await self._journal(records, deliveries))
            return
        try:
            async with asyncio.timeout(DB_WRITE_TIMEOUT):
                async with self._engine.begin() as conn:
                    await insert_messages(conn, records)
                    await insert_deliveries(conn, deliveries)
        except (TimeoutError, SQLAlchemyError, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:  # (raw asyncpg errors come from the COPY)
            log.error("metadata commit of %d rows failed: %s", len(records), exc)
            if self.journal is not None and is_unavailable(exc):
                error = await self._journal(records, deliveries)
            else:
                error = StorageUnavailable(f"database write failed: {type(exc).__name__}")
        except Exception as exc:  # never let the writer task die
            log.exception("unexpected error committing metadata")
            error = StorageUnavailable(f"database write failed: {type(exc).__name__}")
        else:
            self.batches += 1
            self.rows += len(records)
            self.commit_seconds += time.perf_counter() - started
        self._settle(batch, error)

    @staticmethod
    def _settle(batch: list[_Pending], error: BaseException | None) -> None:
        for item in batch:
            if item.done.done():
                continue
            if error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)


async def replay_forever(writer: MetadataWriter, engine: AsyncEngine,
                         interval: float = 1.0) -> None:
    """Index the outage journal as soon as the database answers again."""
    journal = writer.journal
    if journal is None:
        return
    while True:
        if journal.pending:
            try:
                async with asyncio.timeout(60):
                    await journal.replay(engine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # still down: try again shortly
                log.debug("journal replay not possible yet: %s", exc)
        await asyncio.sleep(interval)
