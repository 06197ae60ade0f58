"""API-key authentication with a short-lived in-memory cache of hash lookups."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import Unauthorized
from mailsac.storage.db import connect
from mailsac.storage.keys import ApiKey, find_active_key, hash_key


class KeyAuthenticator:
    """Resolves a presented key to its :class:`ApiKey` or raises :class:`Unauthorized`.

    Positive and negative answers are cached for ``ttl`` seconds (bounded to ``max_entries``)
    so that a busy test suite does not cost a database round trip per request; a revoked
    key therefore stops working within ``ttl`` seconds.
    """

    def __init__(
        self, engine: AsyncEngine, *, ttl: float = 10.0, max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}

    async def authenticate(self, key: str | None) -> ApiKey:
        if not key:
            raise Unauthorized("no API key: send it in the Mailsac-Key header")
        if len(key) > 200:
            raise Unauthorized("invalid API key")
        digest = hash_key(key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            async with connect(self._engine) as conn:  # StorageUnavailable if it is down
                found = await find_active_key(conn, key)
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, found)
        if found is None:
            raise Unauthorized("invalid API key")
        return found

    def forget(self) -> None:
        """Drop every cached answer (after keys are created or revoked in-process)."""
        self._cache.clear()
