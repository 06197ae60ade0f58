"""Reading and deleting stored mail: the domain service behind the HTTP read API."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import MessageNotFound, StorageUnavailable
from mailsac.lru import ByteLRU
from mailsac.mime import ParsedMessage, parse_message
from mailsac.storage import BlobStore, MessageRecord
from mailsac.storage import messages as queries

log = logging.getLogger(__name__)

_DB_ERRORS = (OperationalError, InterfaceError, DBAPIError, OSError, asyncio.TimeoutError)


class Mailboxes:
    """Lists, fetches and deletes messages; keeps a byte-bounded cache of parsed bodies."""

    def __init__(self, engine: AsyncEngine, blobs: BlobStore, cache_bytes: int) -> None:
        self._engine = engine
        self._blobs = blobs
        self.cache: ByteLRU[str, ParsedMessage] = ByteLRU(cache_bytes, lambda p: p.approx_size())
        # Concurrent requests for the same uncached message share one parse.
        self._parsing: dict[str, asyncio.Future[ParsedMessage]] = {}

    async def list_messages(
        self, inbox: str, *, limit: int, until: datetime | None = None
    ) -> list[MessageRecord]:
        try:
            async with self._engine.connect() as conn:
                return await queries.list_inbox(conn, inbox, limit=limit, until=until)
        except _DB_ERRORS as exc:
            raise StorageUnavailable("the database is unavailable") from exc

    async def count_messages(self, inbox: str) -> int:
        try:
            async with self._engine.connect() as conn:
                return await queries.count_inbox(conn, inbox)
        except _DB_ERRORS as exc:
            raise StorageUnavailable("the database is unavailable") from exc

    async def get(self, inbox: str, message_id: str) -> MessageRecord:
        try:
            async with self._engine.connect() as conn:
                record = await queries.get_message(conn, inbox, message_id)
        except _DB_ERRORS as exc:
            raise StorageUnavailable("the database is unavailable") from exc
        if record is None:
            raise MessageNotFound(f"no message {message_id} in {inbox}")
        return record

    async def delete(self, inbox: str, message_id: str) -> MessageRecord:
        try:
            async with self._engine.begin() as conn:
                record = await queries.delete_message(conn, inbox, message_id)
                if record is None:
                    raise MessageNotFound(f"no message {message_id} in {inbox}")
                orphans = await queries.unreferenced_blob_keys(conn, [record.blob_key])
        except _DB_ERRORS as exc:
            raise StorageUnavailable("the database is unavailable") from exc
        await self._drop_blobs(orphans)
        return record

    async def purge(self, inbox: str) -> int:
        """Delete every message of ``inbox`` except starred ones; return how many."""
        try:
            async with self._engine.begin() as conn:
                keys = await queries.purge_inbox(conn, inbox)
                orphans = await queries.unreferenced_blob_keys(conn, keys)
        except _DB_ERRORS as exc:
            raise StorageUnavailable("the database is unavailable") from exc
        await self._drop_blobs(orphans)
        return len(keys)

    async def _drop_blobs(self, keys: list[str]) -> None:
        for key in keys:
            self.cache.discard(key)
        await self._blobs.delete(keys)

    async def raw(self, record: MessageRecord) -> bytes:
        return await self._blobs.read(record.blob_key)

    async def parsed(self, record: MessageRecord) -> ParsedMessage:
        """The parsed message, from the cache or parsed once in a worker thread."""
        key = record.blob_key
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        in_flight = self._parsing.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[ParsedMessage] = asyncio.get_running_loop().create_future()
        self._parsing[key] = future
        try:
            raw = await self._blobs.read(key)
            parsed = await asyncio.to_thread(parse_message, raw)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            self._parsing.pop(key, None)
        self.cache.put(key, parsed)
        future.set_result(parsed)
        return parsed
