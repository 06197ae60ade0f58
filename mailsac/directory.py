"""Who owns which inbox, and where mail for a recipient goes: the in-memory directory.

Reserved addresses and owned domains are few and read on every RCPT and API call, so the
service keeps them in memory. Writers (this process, the CLI, another process) send
``NOTIFY mailsac_directory`` in the same transaction; a dedicated LISTEN connection
reloads the snapshot after each commit, and a periodic reload covers a lost listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.policy import Recipient
from mailsac.storage import directory as store
from mailsac.storage.db import asyncpg_dsn, connect
from mailsac.storage.directory import AddressRecord, DomainRecord

log = logging.getLogger(__name__)

ALIAS_PREFIX = "inbox-"


def catch_all_address(domain: str) -> str:
    return f"*@{domain}"


def domain_of(inbox: str) -> str:
    return inbox.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one recipient's copy is stored, who owns it, and whose push settings fire.

    ``notify`` lists the reserved addresses (the recipient's and the domain's catch-all)
    whose WebSocket/webhook settings apply: mail to a reserved address inside a catch-all
    domain is stored only once, in the reserved inbox, but both addresses are notified.
    """

    inbox: str
    original: str
    domain: str
    account_id: str | None
    notify: tuple[str, ...] = ()


@dataclass
class Directory:
    """The in-memory snapshot of reserved addresses and owned domains."""

    engine: AsyncEngine
    database_url: str = ""
    reload_interval: float = 30.0
    addresses: dict[str, AddressRecord] = field(default_factory=dict)
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    #: Also reloaded on every change notification (e.g. the deny-list).
    also_reload: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)

    async def reload(self) -> None:
        async with self.engine.connect() as conn:
            loaded_addresses = await store.load_addresses(conn)
            loaded_domains = await store.load_domains(conn)
        self.addresses = {a.id: a for a in loaded_addresses}
        self.domains = {d.id: d for d in loaded_domains}
        for reload in self.also_reload:
            await reload()

    async def start(self) -> None:
        await self.reload()
        if self.database_url:
            self._task = asyncio.create_task(self._follow(), name="directory-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self) -> None:
        """LISTEN for changes; reload on each notification or every ``reload_interval``."""
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.database_url), timeout=10)
                await conn.add_listener(store.NOTIFY_CHANNEL, lambda *_: self._dirty.set())
                await self.reload()  # changes made while we were not listening
                while True:
                    # (not asyncio.wait_for: on 3.11 it can swallow the shutdown's cancel)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.reload_interval):
                            await self._dirty.wait()
                    self._dirty.clear()
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("directory listener failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None:
                    try:
                        await conn.close(timeout=2)
                    except Exception:
                        pass

    # -- lookups --------------------------------------------------------------------------

    def owner_of_inbox(self, inbox: str) -> str | None:
        """The account that owns ``inbox`` (reserved, or in an owned domain), else None."""
        reserved = self.addresses.get(inbox)
        if reserved is not None:
            return reserved.account_id
        owned = self.domains.get(domain_of(inbox))
        return owned.account_id if owned is not None else None

    def owned_addresses(self, account_id: str) -> list[AddressRecord]:
        return sorted((a for a in self.addresses.values() if a.account_id == account_id),
                      key=lambda a: a.id)

    def owned_domains(self, account_id: str) -> list[DomainRecord]:
        return sorted((d for d in self.domains.values() if d.account_id == account_id),
                      key=lambda d: d.id)

    async def resolve_alias(self, recipient: Recipient) -> Recipient:
        """Map ``inbox-<hex>@any.domain`` to the inbox it is the secret alias of."""
        if not recipient.mailbox.startswith(ALIAS_PREFIX):
            return recipient
        async with connect(self.engine) as conn:  # StorageUnavailable → 451, retried later
            target = await store.inbox_for_alias(conn, recipient.mailbox)
        if target is None:
            return recipient
        local, _, domain = target.rpartition("@")
        return Recipient(local_part=local, domain=domain, original=recipient.original)

    def notify_addresses(self, inbox: str) -> tuple[str, ...]:
        """The inboxes whose subscribers hear of a message stored in ``inbox``: itself and,
        for a reserved address, its domain's catch-all (used by :meth:`route` and for
        messages other nodes stored)."""
        if inbox in self.addresses:
            catch_all = catch_all_address(domain_of(inbox))
            if catch_all in self.addresses:
                return (inbox, catch_all)
        return (inbox,)

    async def route(self, recipient: Recipient) -> Route:
        recipient = await self.resolve_alias(recipient)
        inbox, domain = recipient.inbox, recipient.domain
        reserved = self.addresses.get(inbox)
        if reserved is not None:
            return Route(inbox, recipient.original, domain, reserved.account_id,
                         self.notify_addresses(inbox))
        catch_all = self.addresses.get(catch_all_address(domain))
        if catch_all is not None:
            return Route(catch_all.id, recipient.original, domain, catch_all.account_id,
                         (catch_all.id,))
        owned = self.domains.get(domain)
        return Route(inbox, recipient.original, domain,
                     owned.account_id if owned is not None else None)

    async def routes(self, recipients: Iterable[Recipient]) -> list[Route]:
        return [await self.route(r) for r in recipients]
