"""A small asyncpg pool of its own for the API's hot reads.

Listing an inbox and getting a message are most of the API's traffic, and each is one
precompiled statement (:mod:`mailsac.storage.rawquery`). Through SQLAlchemy's pool such
a read still pays for checkout and return: each runs in a new greenlet (a stack mapped
and unmapped per switch), about 0.4 ms of an idle 2 ms request measured with timestamps
around each step. asyncpg's own pool hands out a connection in microseconds.

The pool keeps every guarantee :func:`mailsac.storage.db.connect` gives a read: the
same connection settings (start-up timeout, statement timeout, this node's tag), fail
fast while the liveness probe knows the database is down, the whole read bounded by
``DB_TIMEOUT``, driver errors turned into :class:`StorageUnavailable` (HTTP 503) or,
for a value PostgreSQL refuses, :class:`InvalidRequest` (400).

Connections run each statement in autocommit and hold no session state, so returning
one to the pool sends nothing (asyncpg's default reset is a round trip of its own).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import StorageUnavailable
from mailsac.storage.db import DB_TIMEOUT, asyncpg_dsn, known_unavailable, raise_api_error
from mailsac.storage.rawquery import RawQuery

READ_POOL_SIZE = 4
"""Connections per node: a read holds one for a single round trip, so a few serve
thousands of reads a second; a burst beyond them queues (bounded by ``DB_TIMEOUT``)."""


async def _json_codecs(conn: asyncpg.Connection) -> None:
    # Decoded as SQLAlchemy's dialect does on its connections (orjson: the same values,
    # sooner; these columns hold lists and objects of strings).
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=orjson.loads,
                                  schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: a read changes no session state (see the module docstring)."""


class ReadPool:
    """Runs :class:`RawQuery` reads on a dedicated asyncpg pool (made on first use)."""

    def __init__(self, engine: AsyncEngine, options: dict[str, Any],
                 size: int = READ_POOL_SIZE) -> None:
        self._engine = engine
        self._options = options  # db.connect_options(): as the engine's connections
        self.size = size
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def fetch(self, query: RawQuery, **params: Any) -> list[Mapping[str, Any]]:
        """Rows for ``params`` (every bind name of ``query``, by keyword)."""
        if known_unavailable(self._engine):
            raise StorageUnavailable("the database is not answering")
        args = [params[name] for name in query.names]
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                pool = self._pool or await self._open()
                async with pool.acquire() as conn:
                    rows: list[Mapping[str, Any]] = await conn.fetch(query.sql, *args)
                    return rows
        except Exception as exc:
            raise_api_error(self._engine, exc)
            raise

    async def _open(self) -> asyncpg.Pool:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                url = self._engine.url.render_as_string(hide_password=False)
                self._pool = await asyncpg.create_pool(
                    asyncpg_dsn(url), min_size=0, max_size=self.size,
                    init=_json_codecs, reset=_keep_session, **self._options)
            return self._pool

    async def close(self) -> None:
        """Close every connection (at shutdown, after the HTTP listener stopped)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()
