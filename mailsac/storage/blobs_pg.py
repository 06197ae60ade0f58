"""The ``postgres`` blob backend: raw bytes in the ``blob_objects`` table (migration 0008).

A multi-node deployment then needs nothing but PostgreSQL. A blob is durable once its
INSERT has committed (``synchronous_commit`` as the server is configured). A staged
(large) message is inserted in one transaction, 8 MiB at a time (``data || chunk``), so
this process never holds more than one chunk of it; chunks are read from the staging
file in a worker thread.

Orphans (objects no message row refers to) are found with one anti-join per page, oldest
first within the page's key range, never younger than the sweep's minimum age.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import MessageNotFound, StorageUnavailable
from mailsac.storage.blobs import check_key
from mailsac.storage.blobs_remote import (
    DELETE_BATCH,
    SWEEP_MAX_KEYS,
    SWEEP_PAGE,
    StagedBlobStore,
    chunks,
    read_chunk,
)
from mailsac.storage.db import known_unavailable

_metadata = MetaData()
blob_objects = Table(
    "blob_objects",
    _metadata,
    Column("key", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

_ORPHANS = text("""
    SELECT b.key FROM blob_objects b
    WHERE b.key > :after
      AND b.created_at < now() - make_interval(secs => :min_age)
      AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_key = b.key)
    ORDER BY b.key
    LIMIT :page
""")


class PostgresBlobStore(StagedBlobStore):
    """Blobs as rows of ``blob_objects`` (see the module docstring)."""

    backend = "postgres"

    def __init__(self, engine: AsyncEngine, staging_dir: Path, timeout: float = 30.0) -> None:
        super().__init__(staging_dir, timeout)
        self._engine = engine
        self._sweep_after = ""  # where the next orphan-sweep pass goes on

    @property
    def identity(self) -> str:
        url = self._engine.url
        return f"postgres:{url.host}:{url.port}/{url.database}"

    def _check_alive(self) -> None:
        if known_unavailable(self._engine):
            raise StorageUnavailable("the database is not answering")

    async def write(self, key: str, data: bytes) -> None:
        check_key(key)
        self._check_alive()
        with self.failures("write"):
            async with asyncio.timeout(self.timeout), self._engine.begin() as conn:
                await conn.execute(insert(blob_objects).values(
                    key=key, data=data, size=len(data)))

    async def upload_file(self, key: str, path: Path, size: int) -> None:
        check_key(key)
        self._check_alive()
        append = (update(blob_objects).where(blob_objects.c.key == key)
                  .values(data=blob_objects.c.data.concat(bindparam("chunk", type_=LargeBinary)),
                          size=blob_objects.c.size + bindparam("length", type_=BigInteger)))
        with self.failures("write"):
            async with asyncio.timeout(self.timeout), self._engine.begin() as conn:
                for n, (offset, length) in enumerate(chunks(size)):
                    data, _ = await asyncio.to_thread(read_chunk, path, offset, length)
                    if n == 0:
                        await conn.execute(insert(blob_objects).values(
                            key=key, data=data, size=len(data)))
                    else:
                        await conn.execute(append, {"chunk": data, "length": len(data)})

    async def read(self, key: str) -> bytes:
        check_key(key)
        self._check_alive()
        with self.failures("read"):
            async with asyncio.timeout(self.timeout), self._engine.connect() as conn:
                data = await conn.scalar(
                    select(blob_objects.c.data).where(blob_objects.c.key == key))
        if data is None:
            raise MessageNotFound(f"blob {key} is missing")
        return bytes(data)

    async def delete(self, keys: Iterable[str]) -> int:
        wanted = [check_key(k) for k in dict.fromkeys(keys)]
        removed = 0
        for start in range(0, len(wanted), DELETE_BATCH):
            batch = wanted[start:start + DELETE_BATCH]
            with self.failures("delete"):
                async with asyncio.timeout(self.timeout), self._engine.begin() as conn:
                    result = await conn.execute(
                        delete(blob_objects).where(blob_objects.c.key.in_(batch)))
            removed += result.rowcount
        return removed

    async def old_keys(self, min_age: float) -> AsyncGenerator[list[str], None]:
        seen = 0
        while seen < SWEEP_MAX_KEYS:
            with self.failures("list"):
                async with asyncio.timeout(self.timeout), self._engine.connect() as conn:
                    rows = await conn.execute(_ORPHANS, {
                        "after": self._sweep_after, "min_age": float(min_age),
                        "page": SWEEP_PAGE})
                    keys = [row[0] for row in rows]
            if not keys:
                self._sweep_after = ""  # the whole table is done: start over next time
                return
            self._sweep_after = keys[-1]
            seen += len(keys)
            yield keys
