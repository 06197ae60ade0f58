"""Persistence of failure-injection rules and of the failures they injected.

Every change to the rule set sends ``NOTIFY mailsac_chaos`` in its transaction, so each
node's in-memory matcher reloads after commit (:class:`mailsac.chaos.service.Chaos`). The
only write on the SMTP path is :func:`take_one`, done when a rule with ``times`` is about
to fire: a conditional decrement, atomic across nodes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Integer,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.chaos.rules import Rule, RuleSpec
from mailsac.storage.models import metadata

NOTIFY_CHANNEL = "mailsac_chaos"

chaos_rules = Table(
    "chaos_rules",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("target", Text, nullable=True),
    Column("stage", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("code", Integer, nullable=True),
    Column("message", Text, nullable=True),
    Column("delay_seconds", REAL, nullable=True),
    Column("probability", REAL, nullable=True),
    Column("times_left", Integer, nullable=True),
    Column("fired", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

chaos_events = Table(
    "chaos_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("inbox", Text, nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("reply", Text, nullable=True),
    Column("sender", Text, nullable=True),
    Column("client_ip", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

_RULE_COLS = chaos_rules.c[
    "id", "account_id", "scope", "target", "stage", "action", "code", "message",
    "delay_seconds", "probability", "times_left", "fired", "created_at", "expires_at"]


@dataclass(frozen=True, slots=True)
class Event:
    """One injected failure, as recorded for an owned inbox."""

    inbox: str
    account_id: str
    rule_id: str
    scope: str
    stage: str
    action: str
    reply: str | None
    sender: str | None
    client_ip: str | None
    at: datetime


def _live() -> ColumnElement[bool]:
    return chaos_rules.c.expires_at > func.now()


async def notify(conn: AsyncConnection) -> None:
    await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


async def load_live(conn: AsyncConnection) -> list[Rule]:
    """Every rule that has not expired, oldest first (the order rules are tried in)."""
    rows = await conn.execute(select(*_RULE_COLS).where(_live())
                              .order_by(chaos_rules.c.created_at, chaos_rules.c.id))
    return [Rule(*row) for row in rows]


async def list_rules(conn: AsyncConnection, scope: str, target: str | None,
                     account_id: str | None) -> list[Rule]:
    """Live rules of one scope and target (of one account, unless ``account_id`` is None)."""
    condition = and_(chaos_rules.c.scope == scope, _live())
    if target is not None:
        condition = and_(condition, chaos_rules.c.target == target)
    if account_id is not None:
        condition = and_(condition, chaos_rules.c.account_id == account_id)
    rows = await conn.execute(select(*_RULE_COLS).where(condition)
                              .order_by(chaos_rules.c.created_at, chaos_rules.c.id))
    return [Rule(*row) for row in rows]


async def count_live(conn: AsyncConnection, *, scope: str | None = None,
                     target: str | None = None, account_id: str | None = None) -> int:
    condition = _live()
    if scope is not None:
        condition = and_(condition, chaos_rules.c.scope == scope)
    if target is not None:
        condition = and_(condition, chaos_rules.c.target == target)
    if account_id is not None:
        condition = and_(condition,
                         chaos_rules.c.account_id == account_id,
                         chaos_rules.c.scope != "global")
    found = await conn.scalar(select(func.count()).select_from(chaos_rules)
                              .where(condition))
    return int(found or 0)


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Serialise rule creation per account (the limits are counted, then a row added)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                       {"k": f"chaos:{account_id}"})


async def insert_rule(conn: AsyncConnection, spec: RuleSpec, *, account_id: str, scope: str,
                      target: str | None) -> Rule:
    now = (await conn.scalar(select(func.now())))
    assert isinstance(now, datetime)
    row = (await conn.execute(insert(chaos_rules).values(
        id="chr_" + secrets.token_hex(8), account_id=account_id, scope=scope, target=target,
        stage=spec.stage, action=spec.action, code=spec.code, message=spec.message,
        delay_seconds=spec.delay_seconds, probability=spec.probability,
        times_left=spec.times, created_at=now,
        expires_at=now + timedelta(seconds=spec.expires_in)).returning(*_RULE_COLS))).one()
    await notify(conn)
    return Rule(*row)


async def delete_rule(conn: AsyncConnection, rule_id: str, *, scope: str,
                      target: str | None, account_id: str | None) -> bool:
    condition = and_(chaos_rules.c.id == rule_id, chaos_rules.c.scope == scope)
    if target is not None:
        condition = and_(condition, chaos_rules.c.target == target)
    if account_id is not None:
        condition = and_(condition, chaos_rules.c.account_id == account_id)
    result = await conn.execute(delete(chaos_rules).where(condition))
    await notify(conn)
    return bool(result.rowcount)


async def take_one(conn: AsyncConnection, rule_id: str) -> int | None:
    """Use one of a rule's ``times``: the new ``times_left``, or None when none was left
    (another node used the last one) or the rule is gone or expired."""
    left = await conn.scalar(
        update(chaos_rules)
        .where(chaos_rules.c.id == rule_id, chaos_rules.c.times_left > 0,
               _live())
        .values(times_left=chaos_rules.c.times_left - 1, fired=chaos_rules.c.fired + 1)
        .returning(chaos_rules.c.times_left))
    return None if left is None else int(left)


async def add_fired(conn: AsyncConnection, counts: dict[str, int]) -> None:
    """Add firings of rules without ``times`` (counted in memory, written in batches)."""
    for rule_id, count in sorted(counts.items()):
        await conn.execute(update(chaos_rules).where(chaos_rules.c.id == rule_id)
                           .values(fired=chaos_rules.c.fired + count))


async def insert_events(conn: AsyncConnection, events: Sequence[Event]) -> None:
    if events:
        await conn.execute(insert(chaos_events), [
            {"inbox": e.inbox, "account_id": e.account_id, "rule_id": e.rule_id,
             "scope": e.scope, "stage": e.stage, "action": e.action, "reply": e.reply,
             "sender": e.sender, "client_ip": e.client_ip, "at": e.at} for e in events])


async def recent_events(conn: AsyncConnection, inbox: str, account_id: str,
                        limit: int) -> list[Event]:
    """The inbox's latest events while ``account_id`` owned it, newest first."""
    c = chaos_events.c
    rows = await conn.execute(
        select(c.inbox, c.account_id, c.rule_id, c.scope, c.stage, c.action, c.reply,
               c.sender, c.client_ip, c.at)
        .where(c.inbox == inbox, c.account_id == account_id)
        .order_by(c.id.desc()).limit(limit))
    return [Event(**row._mapping) for row in rows]


async def purge(conn: AsyncConnection, *, events_max_age: timedelta,
                events_per_inbox: int) -> tuple[int, int]:
    """Delete expired rules, events older than ``events_max_age`` and all but the newest
    ``events_per_inbox`` events of each inbox. Returns (rules, events) deleted."""
    rules = await conn.execute(delete(chaos_rules).where(
        chaos_rules.c.expires_at <= func.now()))
    c = chaos_events.c
    ranked = select(c.id, func.row_number().over(
        partition_by=c.inbox, order_by=c.id.desc()).label("n")).subquery()
    events = await conn.execute(delete(chaos_events).where(or_(
        c.at < func.now() - events_max_age,
        c.id.in_(select(ranked.c.id).where(ranked.c.n > events_per_inbox)))))
    return int(rules.rowcount or 0), int(events.rowcount or 0)
