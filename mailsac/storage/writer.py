"""Group commit for message metadata.

Each accepted SMTP transaction needs its rows committed before ``250`` is sent. A commit
per message caps intake near the disk's flush rate (roughly 1,000/s here), so concurrent
deliveries hand their rows to one writer task that inserts everything queued so far in a
single transaction and then wakes every waiter. Under light load a batch is one message
(no added latency); under a flood batches grow by themselves.

A commit that does not complete within ``commit_timeout`` (a hung server: frozen, or a
network partition) is treated like a refused one: the batch goes to the outage journal,
and while the liveness probe (:class:`~mailsac.storage.db.LivenessProbe`) says the
database is down, batches go there without trying. A timed-out commit may still complete
later on the server; that is harmless: replay inserts with ``ON CONFLICT DO NOTHING`` and
adds webhook deliveries only for rows it inserted itself, so nothing is duplicated.
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
from mailsac.storage.db import is_unavailable, known_unavailable
from mailsac.storage.extracts import ExtractRow, insert_extracts
from mailsac.storage.journal import Journal
from mailsac.storage.messages import MessageRecord, insert_messages
from mailsac.storage.webhooks import NewDelivery, insert_deliveries

log = logging.getLogger(__name__)

MAX_BATCH_ROWS = 1000
DB_WRITE_TIMEOUT = 2.0  # then the batch goes to the outage journal (if configured)


@dataclass
class _Pending:
    records: Sequence[MessageRecord]
    deliveries: Sequence[NewDelivery]
    extracts: Sequence[ExtractRow]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MetadataWriter:
    """Commits message rows in batches; :meth:`insert` returns once they are durable."""

    def __init__(self, engine: AsyncEngine, journal: Journal | None = None, *,
                 commit_timeout: float = DB_WRITE_TIMEOUT) -> None:
        self._engine = engine
        self.journal = journal
        self.commit_timeout = commit_timeout
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0
        self.commit_seconds = 0.0
        self._abandoned: set[asyncio.Future[None]] = set()  # commits left behind on timeout

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
        for commit in list(self._abandoned):  # still hung at shutdown: journaled already
            commit.cancel()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def insert(
        self, records: Sequence[MessageRecord], deliveries: Sequence[NewDelivery] = (),
        extracts: Sequence[ExtractRow] = (),
    ) -> None:
        """Queue ``records`` (and their webhook deliveries) and wait until committed."""
        if self._task is None:
            raise StorageUnavailable("the metadata writer is not running")
        pending = _Pending(records, deliveries, extracts)
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
        if self.journal is not None and (self.journal.pending
                                         or known_unavailable(self._engine)):
            # Keep arrival order: nothing goes to the database before the journal drained.
            self._settle(batch, await self._journal(records, deliveries))
            return
        try:
            # (The outage journal keeps no extracts: the extract endpoint recomputes them.)
            await self._commit_within_timeout(
                records, deliveries, [e for item in batch for e in item.extracts])
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

    async def _commit_within_timeout(self, records: list[MessageRecord],
                                     deliveries: list[NewDelivery],
                                     extracts: list[ExtractRow]) -> None:
        """Commit, or raise TimeoutError after ``commit_timeout`` seconds.

        On a hung server even cancelling does not return: the transaction's clean-up
        (ROLLBACK) waits for an answer that never comes. So the commit runs as a task of
        its own that is left behind on timeout, and the caller journals the batch at once.
        Should the left-behind commit still succeed later, the journal's replay skips the
        rows it finds (and their deliveries), so nothing is stored twice.
        """
        commit = asyncio.ensure_future(self._insert(records, deliveries, extracts))
        done, _ = await asyncio.wait({commit}, timeout=self.commit_timeout)
        if not done:
            self._abandoned.add(commit)
            commit.add_done_callback(self._forget)
            raise TimeoutError(f"no commit within {self.commit_timeout} s")
        commit.result()

    async def _insert(self, records: list[MessageRecord],
                      deliveries: list[NewDelivery], extracts: list[ExtractRow]) -> None:
        async with self._engine.begin() as conn:
            await insert_messages(conn, records)
            await insert_deliveries(conn, deliveries)
            await insert_extracts(conn, extracts)

    def _forget(self, commit: asyncio.Future[None]) -> None:
        self._abandoned.discard(commit)
        if not commit.cancelled() and commit.exception() is None:
            log.warning("a commit given up on (and journaled) completed after all")

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
        if journal.pending and not known_unavailable(engine):
            try:
                async with asyncio.timeout(60):
                    await journal.replay(engine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # still down: try again shortly
                log.debug("journal replay not possible yet: %s", exc)
        await asyncio.sleep(interval)
