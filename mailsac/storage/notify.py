"""Message change notifications between nodes: the database side.

Migration 0010 installs statement-level triggers on ``messages`` that send, in the
committing transaction, ``NOTIFY mailsac_messages`` with a JSON payload::

    {"n": "<node id of the writer, or empty>", "c": "<its MAILSAC_CLUSTER>", "op": "s" | "d",
     "m": [[id, inbox, account_id], ...]}

``s`` for stored rows, ``d`` for deleted ones; large statements are split into several
payloads below PostgreSQL's 8000-byte limit. A node learns its own id's payloads too and
skips the stored ones (it published those itself). This module parses payloads and loads
the announced rows; :mod:`mailsac.cluster_events` feeds them to the local hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import messages

CHANNEL = "mailsac_messages"
MAX_PAYLOAD = 8000  # PostgreSQL's limit; the trigger stays well below it

_COLUMNS = [messages.c[f.name] for f in fields(MessageRecord)]


class Item(NamedTuple):
    """One announced row."""

    id: str
    inbox: str
    account_id: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """One notification: rows ``stored`` (else deleted) by ``node`` of ``cluster``."""

    node: str
    stored: bool
    items: tuple[Item, ...]
    cluster: str = ""


def parse(payload: str) -> Change | None:
    """The payload as a :class:`Change`, or None if it is not one of ours."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        data = json.loads(payload)
        node, op, items, cluster = data["n"], data["op"], data["m"], data.get("c", "")
        rows = tuple(Item(str(i), str(inbox), None if account is None else str(account))
                     for i, inbox, account in items)
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(node, str) or not isinstance(cluster, str) or op not in ("s", "d"):
        return None
    return Change(node, op == "s", rows, cluster)


async def load(conn: AsyncConnection, ids: Sequence[str]) -> list[MessageRecord]:
    """The rows of ``ids`` that still exist, oldest first (one query)."""
    if not ids:
        return []
    query = (select(*_COLUMNS).where(messages.c.id.in_(list(ids)))
             .order_by(messages.c.received, messages.c.id))
    return [MessageRecord.from_row(r) for r in (await conn.execute(query)).mappings()]


async def received_since(conn: AsyncConnection, since: datetime, inboxes: Iterable[str],
                         domains: Iterable[str], limit: int, accounts: Iterable[str] = (),
                         ) -> list[MessageRecord]:
    """Rows received at/after ``since`` in ``inboxes``, ``domains`` or owned by ``accounts``
    (catching up after the listener missed notifications), oldest first, at most ``limit``."""
    wanted_inboxes, wanted_domains = sorted(set(inboxes)), sorted(set(domains))
    wanted_accounts = sorted(set(accounts))
    if not wanted_inboxes and not wanted_domains and not wanted_accounts:
        return []
    where = or_(messages.c.inbox.in_(wanted_inboxes), messages.c.domain.in_(wanted_domains),
                messages.c.account_id.in_(wanted_accounts))
    query = (select(*_COLUMNS).where(and_(messages.c.received >= since, where))
             .order_by(messages.c.received, messages.c.id).limit(limit))
    return [MessageRecord.from_row(r) for r in (await conn.execute(query)).mappings()]
