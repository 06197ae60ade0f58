"""Account-wide views of mail: the private inbox, filters, search, domains, starred, stats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.directory import Directory
from mailsac.errors import InvalidRequest, NotFound
from mailsac.storage import MessageRecord
from mailsac.storage import accounts as account_store
from mailsac.storage import messages as queries
from mailsac.storage.db import connect
from mailsac.storage.keys import ApiKey
from mailsac.storage.messages import contains
from mailsac.storage.models import messages
from mailsac.timeutil import iso_ms
from mailsac.visibility import Visibility

SEARCH_LIMIT = 100
MAX_SEARCH_TEXT = 256  # characters of a search / filter term (ILIKE cost is rows x term)


def _check_terms(*terms: str | None) -> None:
    if any(term is not None and len(term) > MAX_SEARCH_TEXT for term in terms):
        raise InvalidRequest(f"search terms are limited to {MAX_SEARCH_TEXT} characters")


def account_mail(account_id: str) -> ColumnElement[bool]:
    """The account's private mail plus the public messages it starred."""
    return or_(messages.c.account_id == account_id, messages.c.saved_by == account_id)


@dataclass(frozen=True, slots=True)
class InboxPage:
    messages: list[MessageRecord]
    unread: int


class AccountMail:
    """Queries that span an account's inboxes (contract §1.3, §1.8)."""

    def __init__(self, engine: AsyncEngine, directory: Directory, visibility: Visibility,
                 drop_blobs: Any) -> None:
        self._engine = engine
        self._directory = directory
        self._visibility = visibility
        self._drop_blobs = drop_blobs

    async def inbox(
        self, key: ApiKey, *, limit: int, skip: int, since: datetime | None
    ) -> InboxPage:
        condition = account_mail(key.account_id)
        if since is not None:
            condition = and_(condition, messages.c.received > since)
        async with connect(self._engine) as conn:
            found = await queries.select_messages(conn, condition, limit=limit, skip=skip)
            unread = await queries.count_messages(
                conn, and_(account_mail(key.account_id), messages.c.read.is_(False)))
        return InboxPage(found, unread)

    async def starred(self, key: ApiKey, *, limit: int, skip: int = 0) -> list[MessageRecord]:
        async with connect(self._engine) as conn:
            return await queries.select_messages(
                conn, messages.c.saved_by == key.account_id, limit=limit, skip=skip)

    async def filter(
        self, key: ApiKey, *, subject: str | None, sender: str | None, to: str | None
    ) -> list[MessageRecord]:
        """AND of the given criteria (at least one), case-insensitive substring matches."""
        _check_terms(subject, sender, to)
        criteria = []
        if subject:
            criteria.append(contains(messages.c.subject, subject))
        if sender:
            criteria.append(contains(messages.c.from_addrs, sender))
        if to:
            criteria.append(or_(contains(messages.c.to_addrs, to),
                                contains(messages.c.inbox, to)))
        if not criteria:
            raise InvalidRequest("give at least one of andSubjectIncludes, andFrom, andTo")
        async with connect(self._engine) as conn:
            return await queries.select_messages(
                conn, and_(account_mail(key.account_id), *criteria), limit=SEARCH_LIMIT)

    async def search(self, key: ApiKey, query: str) -> list[MessageRecord]:
        """OR search over sender, recipients, inbox and subject."""
        if not query.strip():
            return []
        text = query.strip()
        _check_terms(text)
        matches = or_(contains(messages.c.subject, text), contains(messages.c.from_addrs, text),
                      contains(messages.c.to_addrs, text), contains(messages.c.inbox, text))
        async with connect(self._engine) as conn:
            return await queries.select_messages(
                conn, and_(account_mail(key.account_id), matches), limit=SEARCH_LIMIT)

    async def domain_messages(
        self, key: ApiKey, domain: str, *, limit: int, until: datetime | None
    ) -> list[MessageRecord]:
        self._visibility.check_domain(key, domain)
        condition = and_(messages.c.domain == domain, messages.c.account_id == key.account_id)
        if until is not None:
            condition = and_(condition, messages.c.received < until)
        async with connect(self._engine) as conn:
            return await queries.select_messages(conn, condition, limit=limit)

    async def delete_domain_mail(self, key: ApiKey, domain: str) -> int:
        """Delete the domain's mail except starred messages (like an inbox purge)."""
        self._visibility.check_domain(key, domain)
        condition = and_(messages.c.domain == domain, messages.c.account_id == key.account_id,
                         messages.c.saved_by.is_(None))
        async with connect(self._engine, write=True) as conn:
            blob_keys = await queries.delete_messages(conn, condition)
            orphans = await queries.unreferenced_blob_keys(conn, blob_keys)
        await self._drop_blobs(orphans)
        return len(blob_keys)

    async def me(self, key: ApiKey) -> dict[str, Any]:
        async with connect(self._engine) as conn:
            account = await account_store.get_account(conn, key.account_id)
        if account is None:
            raise NotFound("account not found")
        return self._me_json(key, account)

    async def set_capture_private(self, key: ApiKey, capture_private: bool) -> dict[str, Any]:
        """Email Capture's private mode (any key of the account may change it); the new
        ``GET /api/me`` object. Mail captured later is starred; earlier mail is unchanged."""
        async with connect(self._engine, write=True) as conn:
            account = await account_store.set_capture_private(
                conn, key.account_id, capture_private)
        if account is None:
            raise NotFound("account not found")
        return self._me_json(key, account)

    def _me_json(self, key: ApiKey, account: account_store.Account) -> dict[str, Any]:
        domains = self._directory.owned_domains(key.account_id)
        return {
            "_id": account.id,
            "email": account.email,
            "messageLimit": account.message_limit,
            "privateAddressCredits": account.private_address_credits,
            "privateDomain": bool(domains),
            "capturePrivate": account.capture_private,
            "recents": [],
            "labels": [],
            "apiAccess": True,
            "apiKeyName": key.name,
            "isAdmin": key.is_admin,
            "created": iso_ms(account.created_at),
        }

    async def stats(self, key: ApiKey) -> dict[str, Any]:
        owned = account_mail(key.account_id)
        async with connect(self._engine) as conn:
            stored = await queries.count_messages(conn, owned)
            starred = await queries.count_messages(conn, messages.c.saved_by == key.account_id)
            size = await queries.sum_sizes(conn, owned if stored else false())
        domains = [d.id for d in self._directory.owned_domains(key.account_id)]
        return {
            "addresses": [a.id for a in self._directory.owned_addresses(key.account_id)],
            "domains": domains,
            "starredMessages": starred,
            "storedMessages": stored,
            "inboxBytes": size,
            "lastMonthOps": 0,
            "defaultDomain": domains[0] if domains else None,
        }
