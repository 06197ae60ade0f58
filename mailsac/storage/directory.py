"""Reserved addresses, owned domains and inbox aliases (the "directory"), and the ownership
column of message rows that must follow them.

Every mutation also sends ``NOTIFY mailsac_directory`` inside its transaction, so the
in-memory copy of a running service (and of other processes) reloads after commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import addresses, domains, inbox_aliases, messages

NOTIFY_CHANNEL = "mailsac_directory"

#: Forwarding settings an address carries (API names → column names).
SETTING_COLUMNS = {
    "forward": "forward",
    "enablews": "enablews",
    "webhook": "webhook",
    "webhookSlack": "webhook_slack",
    "webhookSlackToFrom": "webhook_slack_to_from",
    "info": "info",
}


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """A reserved address (``*@domain`` for a catch-all)."""

    id: str
    account_id: str
    forward: str | None
    enablews: bool
    webhook: str | None
    webhook_slack: str | None
    webhook_slack_to_from: bool
    catch_all: str | None
    info: str | None
    created_at: datetime
    updated_at: datetime
    webhook_secret: str | None


@dataclass(frozen=True, slots=True)
class DomainRecord:
    id: str
    account_id: str
    enablews: bool
    created_at: datetime
    updated_at: datetime


_ADDRESS_COLS = addresses.c[
    "id", "account_id", "forward", "enablews", "webhook", "webhook_slack",
    "webhook_slack_to_from", "catch_all", "info", "created_at", "updated_at", "webhook_secret",
]
_DOMAIN_COLS = domains.c["id", "account_id", "enablews", "created_at", "updated_at"]


async def notify(conn: AsyncConnection) -> None:
    await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


async def load_addresses(conn: AsyncConnection) -> list[AddressRecord]:
    return [AddressRecord(*r) for r in await conn.execute(select(*_ADDRESS_COLS))]


async def load_domains(conn: AsyncConnection) -> list[DomainRecord]:
    return [DomainRecord(*r) for r in await conn.execute(select(*_DOMAIN_COLS))]


async def insert_address(
    conn: AsyncConnection, address: str, account_id: str, settings: dict[str, Any],
    catch_all: str | None = None,
) -> AddressRecord | None:
    """Reserve ``address``; None if somebody already holds it."""
    row = (await conn.execute(
        insert(addresses)
        .values(id=address, account_id=account_id, catch_all=catch_all,
                webhook_secret=secrets.token_hex(24), **settings)
        .on_conflict_do_nothing()
        .returning(*_ADDRESS_COLS)
    )).first()
    if row:
        await notify(conn)
    return AddressRecord(*row) if row else None


async def update_address(
    conn: AsyncConnection, address: str, settings: dict[str, Any]
) -> AddressRecord | None:
    row = (await conn.execute(
        update(addresses).where(addresses.c.id == address)
        .values(updated_at=func.now(), **settings).returning(*_ADDRESS_COLS)
    )).first()
    await notify(conn)
    return AddressRecord(*row) if row else None


async def delete_address(conn: AsyncConnection, address: str) -> AddressRecord | None:
    row = (await conn.execute(
        delete(addresses).where(addresses.c.id == address).returning(*_ADDRESS_COLS)
    )).first()
    await notify(conn)
    return AddressRecord(*row) if row else None


async def insert_domain(
    conn: AsyncConnection, domain: str, account_id: str
) -> DomainRecord | None:
    row = (await conn.execute(
        insert(domains).values(id=domain, account_id=account_id).on_conflict_do_nothing()
        .returning(*_DOMAIN_COLS)
    )).first()
    await notify(conn)
    return DomainRecord(*row) if row else None


async def set_domain_enablews(conn: AsyncConnection, domain: str, enablews: bool) -> None:
    await conn.execute(update(domains).where(domains.c.id == domain)
                       .values(enablews=enablews, updated_at=func.now()))
    await notify(conn)


async def set_message_owner(
    conn: AsyncConnection, inboxes: Sequence[str], account_id: str | None
) -> int:
    """Make existing mail of ``inboxes`` private to ``account_id`` (or public with None).

    Never takes a message another account starred: it stays the starrer's (public row,
    ``saved_by`` set), whoever holds the inbox.
    """
    result = await conn.execute(
        update(messages).where(messages.c.inbox.in_(list(inboxes)), _not_starred_by_other(
            account_id)).values(account_id=account_id)
    )
    return int(result.rowcount)


def _not_starred_by_other(account_id: str | None) -> ColumnElement[bool]:
    if account_id is None:
        return messages.c.saved_by.is_(None) | messages.c.account_id.is_not(None)
    return messages.c.saved_by.is_(None) | (messages.c.saved_by == account_id)


async def set_domain_mail_owner(conn: AsyncConnection, domain: str, account_id: str) -> int:
    """Make the mail already stored for ``domain`` private to its new owner (except what
    other accounts starred)."""
    result = await conn.execute(
        update(messages).where(messages.c.domain == domain, _not_starred_by_other(account_id))
        .values(account_id=account_id)
    )
    return int(result.rowcount)


async def get_alias(conn: AsyncConnection, inbox: str) -> str | None:
    """The inbox's secret alias local part, if it has one (never creates a row)."""
    row = (await conn.execute(
        select(inbox_aliases.c.alias).where(inbox_aliases.c.inbox == inbox))).first()
    return str(row[0]) if row else None


async def count_aliases_created_by(conn: AsyncConnection, account_id: str) -> int:
    query = select(func.count()).select_from(inbox_aliases).where(
        inbox_aliases.c.created_by == account_id)
    return int((await conn.execute(query)).scalar_one())


async def get_or_create_alias(conn: AsyncConnection, inbox: str, candidate: str,
                              created_by: str | None = None) -> str:
    """The inbox's secret alias local part, creating it from ``candidate`` if missing
    (charged to ``created_by``, None for an address the account reserved)."""
    await conn.execute(
        insert(inbox_aliases).values(alias=candidate, inbox=inbox, created_by=created_by)
        .on_conflict_do_nothing()
    )
    row = (await conn.execute(
        select(inbox_aliases.c.alias).where(inbox_aliases.c.inbox == inbox))).one()
    return str(row[0])


async def delete_alias(conn: AsyncConnection, inbox: str) -> None:
    """Forget the inbox's alias (on release: the next holder gets a fresh one)."""
    await conn.execute(delete(inbox_aliases).where(inbox_aliases.c.inbox == inbox))


async def inbox_for_alias(conn: AsyncConnection, alias: str) -> str | None:
    row = (await conn.execute(
        select(inbox_aliases.c.inbox).where(inbox_aliases.c.alias == alias))).first()
    return str(row[0]) if row else None
