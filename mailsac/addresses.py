"""Reserving ("enhanced"/private) addresses, their settings, aliases and custom domains.

Reserving an address makes its existing and future mail private to the account; releasing
it makes the mail public again (or the domain owner's, for an address in an owned domain).
An account may hold at most ``private_address_credits`` reserved addresses, and create
at most ``max_aliases`` secret aliases of inboxes it does not reserve. Neither reserving
nor releasing ever touches a message another account starred (see
:mod:`mailsac.visibility`). Webhook history is shown only to the account that created it,
with the secret parts of target URLs removed.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailsac.directory import ALIAS_PREFIX, Directory, catch_all_address, domain_of
from mailsac.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from mailsac.policy import normalize_inbox
from mailsac.storage import accounts as account_store
from mailsac.storage import directory as store
from mailsac.storage import messages as queries
from mailsac.storage import webhooks as webhook_store
from mailsac.storage.db import connect
from mailsac.storage.directory import SETTING_COLUMNS, AddressRecord, DomainRecord
from mailsac.storage.keys import ApiKey
from mailsac.storage.models import messages
from mailsac.storage.webhooks import Delivery as WebhookDelivery

MAX_BULK = 100
REDACTED = "\u2026redacted"
_BOOL_SETTINGS = {"enablews", "webhookSlackToFrom"}
_URL_SETTINGS = {"webhook", "webhookSlack"}


def parse_settings(body: dict[str, Any]) -> dict[str, Any]:
    """Validate forwarding settings from a request body; return column → value."""
    values: dict[str, Any] = {}
    for name, column in SETTING_COLUMNS.items():
        if name not in body:
            continue
        value = body[name]
        if name in _BOOL_SETTINGS:
            if not isinstance(value, bool):
                raise InvalidRequest(f"{name} must be true or false")
        elif value in (None, ""):
            value = None
        elif not isinstance(value, str) or len(value) > 2000:
            raise InvalidRequest(f"{name} must be a string of at most 2000 characters")
        elif name in _URL_SETTINGS:
            try:
                parts = urlsplit(value)
                valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            except ValueError:  # e.g. an unbalanced "[" (an invalid IPv6 literal)
                valid = False
            if not valid:
                raise InvalidRequest(f"{name} must be an http(s) URL")
        elif name == "forward":
            value = normalize_inbox(value)
        values[column] = value
    return values


def redact_url(kind: str, url: str) -> str:
    """A delivery target as history shows it: never userinfo, query or fragment; for Slack
    (whose path is the secret) only scheme and host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    if kind == "slack":
        return f"{parts.scheme}://{host}/{REDACTED}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _shown(delivery: WebhookDelivery) -> WebhookDelivery:
    url = redact_url(delivery.kind, delivery.url)
    error = delivery.last_error
    if error and delivery.url and delivery.url in error:
        error = error.replace(delivery.url, url)
    return replace(delivery, url=url, last_error=error)


@dataclass(frozen=True, slots=True)
class AddressView:
    """An address as the API shows it: reserved (``record`` set) or not."""

    address: str
    record: AddressRecord | None
    alias: str | None
    implicit_owner: str | None = None  # the domain owner, for a non-reserved address


class Addresses:
    """Reserve, update, release and inspect addresses; list owned domains."""

    def __init__(
        self, engine: AsyncEngine, directory: Directory,
        drop_blobs: Callable[[list[str]], Awaitable[None]], *, max_aliases: int = 1000,
    ) -> None:
        self._engine = engine
        self._directory = directory
        self._drop_blobs = drop_blobs
        self._max_aliases = max_aliases

    @property
    def directory(self) -> Directory:
        return self._directory

    async def webhook_deliveries(self, key: ApiKey, address: str) -> list[WebhookDelivery]:
        """Recent webhook/Slack attempts for an address the caller reserved: only those its
        own account created (not a previous holder's), target URLs redacted, no payload."""
        inbox = normalize_inbox(address)
        holder = self._directory.addresses.get(inbox)
        if holder is None or holder.account_id != key.account_id:
            raise Unauthorized(f"{inbox} is not reserved by your account")
        async with connect(self._engine) as conn:
            found = await webhook_store.recent_for_address(conn, inbox, key.account_id, 100)
        return [_shown(d) for d in found]

    async def _alias(self, conn: AsyncConnection, inbox: str, charge_to: str | None) -> str:
        """The inbox's alias, created if missing; a new alias of an inbox the account does
        not reserve is charged to ``charge_to`` (403 beyond ``max_aliases``)."""
        local = await store.get_alias(conn, inbox)
        if local is None:
            if charge_to is not None and (await store.count_aliases_created_by(
                    conn, charge_to)) >= self._max_aliases:
                raise Forbidden(f"Alias limit reached: your account may create at most "
                                f"{self._max_aliases} aliases of addresses it does not reserve")
            local = await store.get_or_create_alias(
                conn, inbox, ALIAS_PREFIX + secrets.token_hex(12), charge_to)
        return f"{local}@{domain_of(inbox)}"

    async def view(self, key: ApiKey, address: str) -> AddressView:
        inbox = normalize_inbox(address)
        owner = self._directory.owner_of_inbox(inbox)
        if owner is not None and owner != key.account_id:
            raise Unauthorized("This address is owned by another account")
        record = self._directory.addresses.get(inbox)
        async with connect(self._engine) as conn:
            local = await store.get_alias(conn, inbox)
        if local is not None:
            alias = f"{local}@{domain_of(inbox)}"
        else:  # the first look creates it, charged to the caller unless reserved by it
            async with connect(self._engine, write=True) as conn:
                alias = await self._alias(conn, inbox, None if record else key.account_id)
        return AddressView(inbox, record, alias, None if record else owner)

    async def owned(self, key: ApiKey) -> list[AddressView]:
        records = self._directory.owned_addresses(key.account_id)
        async with connect(self._engine, write=True) as conn:
            return [AddressView(r.id, r, await self._alias(conn, r.id, None)) for r in records]

    def availability(self, address: str) -> dict[str, Any]:
        inbox = normalize_inbox(address)
        owned = self._directory.owner_of_inbox(inbox) is not None
        return {"available": not owned, "email": inbox, "owned": owned}

    def _check_reservable(self, key: ApiKey, inbox: str) -> None:
        holder = self._directory.addresses.get(inbox)
        if holder is not None:
            if holder.account_id == key.account_id:
                raise InvalidRequest(f"{inbox} is already reserved by your account")
            raise Unauthorized(f"{inbox} is owned by another account")
        domain = self._directory.domains.get(domain_of(inbox))
        if domain is not None and domain.account_id != key.account_id:
            raise Unauthorized(f"{inbox} is in a domain owned by another account")
        if inbox.startswith("*@") and domain is None:
            raise InvalidRequest("a catch-all address needs a domain your account owns")

    async def reserve(
        self, key: ApiKey, addresses: list[str], settings: dict[str, Any]
    ) -> list[AddressView]:
        """Reserve every address or none (400 when credits run out)."""
        inboxes = list(dict.fromkeys(normalize_inbox(a) for a in addresses))
        if len(inboxes) > MAX_BULK:
            raise InvalidRequest(f"at most {MAX_BULK} addresses per request")
        for inbox in inboxes:
            self._check_reservable(key, inbox)
        views = []
        async with connect(self._engine, write=True) as conn:
            account = await account_store.get_account(conn, key.account_id)
            held = len(self._directory.owned_addresses(key.account_id))
            if account is None or held + len(inboxes) > account.private_address_credits:
                raise InvalidRequest("Not enough private address credits")
            for inbox in inboxes:
                catch = inbox.removeprefix("*@") if inbox.startswith("*@") else None
                record = await store.insert_address(conn, inbox, key.account_id, settings, catch)
                if record is None:  # reserved concurrently by somebody else
                    raise Unauthorized(f"{inbox} is owned by another account")
                await store.set_message_owner(conn, [inbox], key.account_id)
                views.append(AddressView(inbox, record, await self._alias(conn, inbox, None)))
        await self._directory.reload()
        return views

    async def update(self, key: ApiKey, address: str, settings: dict[str, Any]) -> AddressView:
        inbox = normalize_inbox(address)
        holder = self._directory.addresses.get(inbox)
        if holder is None or holder.account_id != key.account_id:
            raise Unauthorized(f"{inbox} is not reserved by your account")
        async with connect(self._engine, write=True) as conn:
            record = await store.update_address(conn, inbox, settings)
            alias = await self._alias(conn, inbox, None)
        await self._directory.reload()
        return AddressView(inbox, record, alias)

    async def release(self, key: ApiKey, address: str, delete_messages: bool) -> AddressView:
        inbox = normalize_inbox(address)
        holder = self._directory.addresses.get(inbox)
        if holder is None:
            raise InvalidRequest(f"{inbox} is not reserved")
        if holder.account_id != key.account_id:
            raise Unauthorized(f"{inbox} is owned by another account")
        domain = self._directory.domains.get(domain_of(inbox))
        async with connect(self._engine, write=True) as conn:
            record = await store.delete_address(conn, inbox)
            blob_keys: list[str] = []
            if delete_messages:  # all of it, its own starred too, as on Mailsac; never
                # a message another account starred (that one is the starrer's)
                mine = or_(messages.c.saved_by.is_(None), messages.c.saved_by == key.account_id)
                blob_keys = await queries.delete_messages(
                    conn, and_(messages.c.inbox == inbox, mine))
                blob_keys = await queries.unreferenced_blob_keys(conn, blob_keys)
            else:
                await store.set_message_owner(
                    conn, [inbox], domain.account_id if domain is not None else None)
            # A fresh alias for the next holder (and release/reserve cycles add no rows).
            await store.delete_alias(conn, inbox)
        await self._directory.reload()
        await self._drop_blobs(blob_keys)
        return AddressView(inbox, record, None)

    def domain_owner(self, domain: str) -> str | None:
        owned = self._directory.domains.get(domain)
        return owned.account_id if owned is not None else None

    def domains(self, key: ApiKey) -> list[DomainRecord]:
        return self._directory.owned_domains(key.account_id)

    async def add_domain(self, domain: str, account_id: str, catch_all: bool) -> DomainRecord:
        """Give ``domain`` to an account (admin only); its stored mail becomes private."""
        domain = normalize_inbox(f"x@{domain}").partition("@")[2]
        current = self._directory.domains.get(domain)
        if current is not None and current.account_id != account_id:
            raise Forbidden(f"{domain} is owned by another account")
        if any(domain_of(a.id) == domain and a.account_id != account_id
               for a in self._directory.addresses.values()):
            raise Forbidden(f"another account has reserved addresses in {domain}")
        async with connect(self._engine, write=True) as conn:
            if await account_store.get_account(conn, account_id) is None:
                raise NotFound(f"no account {account_id}")
            record = await store.insert_domain(conn, domain, account_id)
            await store.set_domain_mail_owner(conn, domain, account_id)
            if catch_all:
                await store.insert_address(conn, catch_all_address(domain), account_id, {},
                                           domain)
        await self._directory.reload()
        if record is None:
            record = self._directory.domains[domain]
        return record
