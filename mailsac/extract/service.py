"""Serving a message's codes and links: the stored extract, or one computed on demand.

Extracts are computed at intake and stored in the same transaction as the message. A
message without one (stored before extraction existed, or indexed from the outage
journal) gets it computed in an analysis worker when first asked for, and stored then.
"""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.analysis import Analyzer
from mailsac.mailbox import Mailboxes
from mailsac.storage.db import connect
from mailsac.storage.extracts import get_extract, store_extract
from mailsac.storage.keys import ApiKey

_EMPTY = '{"codes":[],"links":[],"actionLink":null}'


class Extracts:
    """Codes and links of one message, with the visibility rules of reading it."""

    def __init__(self, engine: AsyncEngine, mailboxes: Mailboxes, analyzer: Analyzer) -> None:
        self._engine = engine
        self._mailboxes = mailboxes
        self._analyzer = analyzer
        self.computed = 0  # extracts computed on demand (not stored at intake)

    async def get(self, key: ApiKey, inbox: str, message_id: str) -> str:
        """The JSON object text ``{"_id", "codes", "links", "actionLink"}``; raises like
        :meth:`Mailboxes.get` when the message is absent or not visible to ``key``."""
        record = await self._mailboxes.get(key, inbox, message_id)
        async with connect(self._engine) as conn:
            data = await get_extract(conn, record.id)
        if data is None:
            data = await self._analyzer.extract(await self._mailboxes.raw(record)) or _EMPTY
            self.computed += 1
            async with connect(self._engine, write=True) as conn:
                await store_extract(conn, record.id, data)
        # The stored text is a JSON object: put the id in front without decoding it.
        body = data.strip()
        return '{"_id":' + json.dumps(record.id) + ("," + body[1:] if body != "{}" else "}")
