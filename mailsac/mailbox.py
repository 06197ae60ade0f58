"""Reading, changing and deleting stored mail: the domain service behind the message API.

Every method takes the caller's :class:`ApiKey` and applies :mod:`mailsac.visibility`
before touching a row, so the HTTP layer cannot forget a check.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.admin import is_operator
from mailsac.errors import InvalidRequest, MessageNotFound
from mailsac.forwarding.hub import MessageHub
from mailsac.lru import ByteLRU
from mailsac.matching import Criteria, Scope
from mailsac.mime import ParsedMessage, parse_message
from mailsac.rendering import Renderings
from mailsac.singleflight import SingleFlight
from mailsac.spam_feedback import SpamFeedback
from mailsac.storage import BlobStore, MessageRecord
from mailsac.storage import messages as queries
from mailsac.storage.db import connect
from mailsac.storage.keys import ApiKey
from mailsac.storage.models import messages
from mailsac.storage.readpool import ReadPool
from mailsac.visibility import Visibility, visible_to

log = logging.getLogger(__name__)

FOLDERS = ("inbox", "all", "spam", "trash")
MAX_LABELS = 100
MAX_LABEL_LENGTH = 100
# The API's hottest query, compiled once: an inbox's newest messages the caller may see.
_LISTING = queries.inbox_listing(visible_to(bindparam("account")))  # type: ignore[arg-type]
_LISTING_UNTIL = queries.inbox_listing(visible_to(bindparam("account")),  # type: ignore[arg-type]
                                       until=True)


class Mailboxes:
    """Lists, fetches, flags and deletes messages; caches parsed bodies by bytes."""

    def __init__(
        self, engine: AsyncEngine, reads: ReadPool, blobs: BlobStore, cache_bytes: int,
        visibility: Visibility, hub: MessageHub | None = None, spam: SpamFeedback | None = None,
        render_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._engine = engine
        self._reads = reads  # the hot reads: list an inbox, get a message
        self._blobs = blobs
        self._visibility = visibility
        self._hub = hub
        self._spam = spam
        self.cache: ByteLRU[str, ParsedMessage] = ByteLRU(cache_bytes, lambda p: p.approx_size())
        # Concurrent requests for the same uncached message share one parse, which goes on
        # for the others when one of them is cancelled (its client went away).
        self._parses: SingleFlight[str, ParsedMessage] = SingleFlight(self.cache.put)
        # Text/HTML renderings: computed once per blob off the loop, cached by bytes.
        self.renderings = Renderings(self.parsed, render_cache_bytes)

    # -- inbox level ----------------------------------------------------------------------

    async def list_messages(
        self, key: ApiKey, inbox: str, *, limit: int, until: datetime | None = None,
        light: bool = False,
    ) -> list[MessageRecord]:
        """Newest first; ``light`` records carry no address, link or attachment lists."""
        self._visibility.check_inbox(key, inbox)
        if light:
            async with connect(self._engine) as conn:
                return await queries.list_inbox(conn, inbox, limit=limit, until=until,
                                                condition=visible_to(key.account_id),
                                                light=True)
        listing = _LISTING if until is None else _LISTING_UNTIL
        return await queries.run_listing(self._reads, listing, inbox=inbox,
                                         account=key.account_id, limit=limit, until=until)

    async def count_messages(self, key: ApiKey, inbox: str) -> int:
        self._visibility.check_inbox(key, inbox)
        async with connect(self._engine) as conn:
            return await queries.count_inbox(conn, inbox, visible_to(key.account_id))

    async def purge(self, key: ApiKey, inbox: str) -> int:
        """Delete the inbox's messages the caller can see, except starred ones."""
        self._visibility.check_inbox(key, inbox)
        async with connect(self._engine, write=True) as conn:
            keys = await queries.purge_inbox(conn, inbox, visible_to(key.account_id))
            orphans = await queries.unreferenced_blob_keys(conn, keys)
        await self.drop_blobs(orphans)
        return len(keys)

    # -- message level --------------------------------------------------------------------

    async def get(self, key: ApiKey, inbox: str, message_id: str) -> MessageRecord:
        record = await queries.get_message(self._reads, inbox, message_id)
        return self._visibility.check_message(key, inbox, message_id, record)

    async def delete(self, key: ApiKey, inbox: str, message_id: str) -> MessageRecord:
        record = await self.get(key, inbox, message_id)
        async with connect(self._engine, write=True) as conn:
            deleted = await queries.delete_message(conn, inbox, record.id)
            if deleted is None:
                raise MessageNotFound(f"no message {message_id} in {inbox}")
            orphans = await queries.unreferenced_blob_keys(conn, [deleted.blob_key])
        await self.drop_blobs(orphans)
        # Subscribers (here and on every other node) hear of it from the database's
        # notification, like every other deletion (mailsac.cluster_events).
        return deleted

    async def stored_matches(
        self, key: ApiKey, scope: Scope, criteria: Criteria, *, since: datetime, limit: int,
    ) -> list[MessageRecord]:
        """Up to ``limit`` messages of ``scope`` received at/after ``since`` that the caller
        may see and that pass the SQL form of ``criteria`` (a superset of the metadata
        match; bodies are not looked at), oldest first. 403 for another account's inbox
        or a domain the caller does not own."""
        if scope.kind == "inbox":
            self._visibility.check_inbox(key, scope.value)
        elif scope.kind == "domain":
            self._visibility.check_domain(key, scope.value)
        condition = and_(scope.sql(), messages.c.received >= since, *criteria.sql())
        async with connect(self._engine) as conn:
            return await queries.select_messages(conn, condition, limit=limit,
                                                 oldest_first=True)

    async def _update(self, record: MessageRecord, **values: Any) -> MessageRecord:
        async with connect(self._engine, write=True) as conn:
            updated = await queries.update_message(conn, record.id, **values)
        if updated is None:
            raise MessageNotFound(f"no message {record.id}")
        return updated

    async def toggle_star(self, key: ApiKey, inbox: str, message_id: str) -> MessageRecord:
        """Star (private to the caller, never recycled; 403 beyond the account's starred
        quota) or unstar a message (then it belongs to whoever holds its inbox now)."""
        record = await self.get(key, inbox, message_id)
        if record.saved_by == key.account_id:
            owner = record.account_id or self._visibility.inbox_owner(record.inbox)
            return await self._update(record, saved_by=None, account_id=owner)
        async with connect(self._engine) as conn:
            starred, message_limit = await queries.starred_quota(conn, key.account_id)
        self._visibility.check_star_quota(starred, message_limit)
        return await self._update(record, saved_by=key.account_id)

    async def set_label(
        self, key: ApiKey, inbox: str, message_id: str, label: str, present: bool
    ) -> MessageRecord:
        label = label.strip()
        if not label or len(label) > MAX_LABEL_LENGTH:
            raise InvalidRequest(f"a label must have 1 to {MAX_LABEL_LENGTH} characters")
        record = await self.get(key, inbox, message_id)
        labels = [x for x in record.labels if x != label]
        if present:
            if len(labels) >= MAX_LABELS:
                raise InvalidRequest(f"a message can carry at most {MAX_LABELS} labels")
            labels.append(label)
        if labels == record.labels:
            return record
        return await self._update(record, labels=labels)

    async def set_folder(
        self, key: ApiKey, inbox: str, message_id: str, folder: str
    ) -> MessageRecord:
        if folder not in FOLDERS:
            raise InvalidRequest(f"folder must be one of {', '.join(FOLDERS)}")
        record = await self.get(key, inbox, message_id)
        if (record.folder == "spam") != (folder == "spam"):
            await self._learn(key, record, is_spam=folder == "spam")  # into or out of spam
        return await self._update(record, folder=folder)

    async def get_by_id(self, key: ApiKey, message_id: str) -> MessageRecord:
        async with connect(self._engine) as conn:
            record = await queries.get_by_id(conn, message_id)
        if record is None:
            raise MessageNotFound(f"no message {message_id}")
        return await self.get(key, record.inbox, message_id)

    async def mark_spam(self, key: ApiKey, message_id: str, is_spam: bool) -> MessageRecord:
        """Teach the spam model and file the message into ``spam`` (or back to ``inbox``)."""
        record = await self.get_by_id(key, message_id)
        await self._learn(key, record, is_spam=is_spam)
        return await self._update(record, folder="spam" if is_spam else "inbox")

    @property
    def spam(self) -> SpamFeedback | None:
        """The spam feedback service (operator teaching, spam reports)."""
        return self._spam

    async def _learn(self, key: ApiKey, record: MessageRecord, *, is_spam: bool) -> None:
        if self._spam is not None:  # the operator's keys teach the trusted layer
            account = None if is_operator(key) else key.account_id
            await self._spam.learn(account, record, await self.raw(record), is_spam)

    async def set_read(
        self, key: ApiKey, inbox: str, message_id: str, read: bool
    ) -> MessageRecord:
        record = await self.get(key, inbox, message_id)
        return await self._update(record, read=read)

    # -- bodies ---------------------------------------------------------------------------

    async def drop_blobs(self, keys: list[str]) -> None:
        for key in keys:
            self.cache.discard(key)
            self.renderings.discard(key)
        await self._blobs.delete(keys)

    async def raw(self, record: MessageRecord) -> bytes:
        return await self._blobs.read(record.blob_key)

    async def parsed(self, record: MessageRecord) -> ParsedMessage:
        """The parsed message, from the cache or parsed once in a worker thread."""
        cached = self.cache.get(record.blob_key)
        if cached is not None:
            return cached
        return await self._parses.run(record.blob_key, lambda: self._parse(record.blob_key))

    async def _parse(self, blob_key: str) -> ParsedMessage:
        raw = await self._blobs.read(blob_key)
        return await asyncio.to_thread(parse_message, raw)
