"""The failure-injection service: rules through the API, decisions for the SMTP server.

Each node keeps every live rule in memory (:class:`~mailsac.chaos.matcher.RuleIndex`),
loaded at start and reloaded when ``NOTIFY mailsac_chaos`` says the table changed (and
every ``reload_interval`` s in case a notification was lost), so all nodes of a cluster
apply a rule. With no live rule, :attr:`Chaos.active` is False and the SMTP server skips
the whole mechanism with one attribute read.

When a rule is about to fire: its ``probability`` is rolled; a rule with ``times`` then
takes one of them in the database (a conditional decrement, atomic across nodes: N fire
N times in the whole cluster). Firings of rules without ``times`` and the record of each
injected failure are written in batches every ``flush_interval`` s (bounded buffers); the
API adds what this node has not written yet. Expired rules never fire and are purged
every ``purge_interval`` s with the old events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.chaos import store
from mailsac.chaos.matcher import RuleIndex
from mailsac.chaos.rules import (
    MAX_GLOBAL_RULES,
    MAX_RULES_PER_ACCOUNT,
    MAX_RULES_PER_TARGET,
    Rule,
    RuleSpec,
)
from mailsac.errors import InvalidRequest, MailsacError
from mailsac.policy import Recipient
from mailsac.storage.db import asyncpg_dsn, connect
from mailsac.storage.joblock import CHAOS_PURGE, exclusive
from mailsac.timeutil import now_ms

log = logging.getLogger(__name__)

EVENTS_PER_INBOX = 100  # kept per inbox (and returned by the events endpoint)
EVENTS_MAX_AGE = timedelta(days=7)
MAX_PENDING_EVENTS = 10_000  # not yet written (the oldest go first when full)


@dataclass(frozen=True, slots=True)
class Fault:
    """What the SMTP server does instead of (or before) its normal reply."""

    rule: Rule
    action: str  # reply | delay | drop
    reply: str
    delay: float


class Chaos:
    """Failure-injection rules: storage, the per-node matcher, firing and its record."""

    def __init__(
        self, engine: AsyncEngine, database_url: str = "", *,
        owner_of_inbox: Callable[[str], str | None],
        domain_owner: Callable[[str], str | None],
        reload_interval: float = 30.0, flush_interval: float = 1.0,
        purge_interval: float = 300.0,
    ) -> None:
        self._engine = engine
        self._database_url = database_url
        self.owner_of_inbox = owner_of_inbox
        self.domain_owner = domain_owner
        self.index = RuleIndex(owner_of_inbox, domain_owner)
        self.reload_interval = reload_interval
        self.flush_interval = flush_interval
        self.purge_interval = purge_interval
        #: False while no rule is live: the SMTP server's only cost in that case.
        self.active = False
        self.injected: dict[tuple[str, str, str], int] = {}  # (scope, stage, action)
        self.unavailable = 0  # firings skipped: the database could not take a `times`
        self._pending_fired: dict[str, int] = {}
        self._pending_events: deque[store.Event] = deque(maxlen=MAX_PENDING_EVENTS)
        # Held while a flush writes and while the API reads counts or events: a reader
        # sees each firing exactly once, pending here or committed, never in between.
        self._flushing = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._random = random.random

    # -- lifecycle ------------------------------------------------------------------------

    async def reload(self) -> None:
        async with connect(self._engine) as conn:
            rules = await store.load_live(conn)
        self.index.replace(rules)
        self._refresh_active()

    def _refresh_active(self) -> None:
        self.active = bool(self.index.rules) and time.time() < self.index.horizon

    async def start(self) -> None:
        """Load the rules (before SMTP listens) and follow changes in the background."""
        try:
            await self.reload()
        except MailsacError as exc:  # the follower retries
            log.warning("chaos rules not loaded at start: %s", exc)
        self._task = asyncio.create_task(self._run(), name="chaos")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.flush()

    async def _run(self) -> None:
        """LISTEN for rule changes; reload on each, flush counts and events every
        ``flush_interval``, purge every ``purge_interval``."""
        next_reload = time.monotonic() + self.reload_interval
        next_purge = time.monotonic() + self.purge_interval
        conn: Any = None
        while True:
            try:
                if conn is None and self._database_url:
                    conn = await asyncpg.connect(asyncpg_dsn(self._database_url), timeout=10)
                    await conn.add_listener(store.NOTIFY_CHANNEL,
                                            lambda *_: self._dirty.set())
                    self._dirty.set()  # changes made while we were not listening
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._dirty.wait()
                now = time.monotonic()
                if self._dirty.is_set() or now >= next_reload:
                    self._dirty.clear()
                    next_reload = now + self.reload_interval
                    await self.reload()
                self._refresh_active()
                await self.flush()
                if now >= next_purge:
                    next_purge = now + self.purge_interval
                    await self.purge()
            except asyncio.CancelledError:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
                raise
            except Exception as exc:
                log.warning("chaos rule follower failed (%s); retrying", exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
                    conn = None
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Write the firing counts and events gathered since the last flush."""
        if not self._pending_fired and not self._pending_events:
            return
        async with self._flushing:
            fired, self._pending_fired = self._pending_fired, {}
            events = list(self._pending_events)
            self._pending_events.clear()
            try:
                async with connect(self._engine, write=True) as conn:
                    await store.add_fired(conn, fired)
                    await store.insert_events(conn, events)
            except Exception as exc:
                log.warning("chaos counts and events not written (%s); retrying", exc)
                for rule_id, count in fired.items():  # next time (events: as many as fit)
                    self._pending_fired[rule_id] = self._pending_fired.get(rule_id, 0) + count
                self._pending_events.extendleft(reversed(events))

    async def purge(self) -> None:
        """Delete expired rules and old events, unless another node is doing it now."""
        try:
            async with exclusive(self._engine, CHAOS_PURGE) as held:
                if not held:
                    return
                async with connect(self._engine, write=True) as conn:
                    rules, events = await store.purge(conn, events_max_age=EVENTS_MAX_AGE,
                                                      events_per_inbox=EVENTS_PER_INBOX)
        except Exception as exc:
            log.warning("chaos purge failed: %s", exc)
            return
        if rules or events:
            log.info("chaos purge: %d expired rules, %d old events", rules, events)

    # -- the SMTP side --------------------------------------------------------------------

    async def fire(self, stage: str, recipients: Sequence[Recipient] = (), *,
                   sender: str | None = None, client_ip: str = "") -> Fault | None:
        """The fault to inject now at ``stage`` for ``recipients`` (none at connect and
        mail), or None to carry on normally. Counts and records a fault it returns."""
        for rule in self.index.candidates(stage, recipients, time.time()):
            if rule.probability is not None and self._random() >= rule.probability:
                continue
            if rule.times_left is not None:
                if rule.times_left <= 0 or not await self._take(rule):
                    continue
            else:
                self._pending_fired[rule.id] = self._pending_fired.get(rule.id, 0) + 1
            self._record(rule, recipients, sender, client_ip)
            return Fault(rule, rule.action, rule.reply_text() if rule.action == "reply" else "",
                         rule.delay_seconds or 0.0)
        return None

    async def _take(self, rule: Rule) -> bool:
        try:
            async with connect(self._engine, write=True) as conn:
                left = await store.take_one(conn, rule.id)
        except Exception as exc:  # never fail mail because the chaos bookkeeping failed
            self.unavailable += 1
            log.warning("chaos rule %s not fired: %s", rule.id, exc)
            return False
        rule.times_left = 0 if left is None else min(left, rule.times_left or 0)
        if left is None:
            return False
        rule.fired += 1
        return True

    def _record(self, rule: Rule, recipients: Sequence[Recipient], sender: str | None,
                client_ip: str) -> None:
        key = (rule.scope, rule.stage, rule.action)
        self.injected[key] = self.injected.get(key, 0) + 1
        reply = rule.reply_text() if rule.action == "reply" else None
        at = now_ms()
        for inbox in dict.fromkeys(r.inbox for r in recipients):
            owner = self.owner_of_inbox(inbox)
            if owner is not None:  # only an owner can read events: no rows for public inboxes
                self._pending_events.append(store.Event(
                    inbox, owner, rule.id, rule.scope, rule.stage, rule.action, reply,
                    sender, client_ip or None, at))

    def metrics(self) -> dict[str, Any]:
        return {"injected": dict(self.injected), "rules": self.index.live_count(time.time()),
                "unavailable": self.unavailable}

    # -- the API side ---------------------------------------------------------------------

    def pending_fired(self, rule: Rule) -> Rule:
        """``rule`` with the firings this node counted but has not written yet."""
        rule.fired += self._pending_fired.get(rule.id, 0)
        return rule

    async def create(self, spec: RuleSpec, *, account_id: str, scope: str,
                     target: str | None) -> Rule:
        """Store a rule (400 beyond the per-target, per-account or global limit)."""
        async with connect(self._engine, write=True) as conn:
            await store.lock_account(conn, account_id if scope != "global" else "*global*")
            if scope == "global":
                if await store.count_live(conn, scope="global") >= MAX_GLOBAL_RULES:
                    raise InvalidRequest(f"at most {MAX_GLOBAL_RULES} global chaos rules "
                                         f"may be live at once; delete some first")
            else:
                if await store.count_live(conn, scope=scope, target=target
                                          ) >= MAX_RULES_PER_TARGET:
                    raise InvalidRequest(f"at most {MAX_RULES_PER_TARGET} chaos rules may be "
                                         f"live on {target} at once; delete some first")
                if await store.count_live(conn, account_id=account_id
                                          ) >= MAX_RULES_PER_ACCOUNT:
                    raise InvalidRequest(f"at most {MAX_RULES_PER_ACCOUNT} chaos rules per "
                                         f"account may be live at once; delete some first")
            rule = await store.insert_rule(conn, spec, account_id=account_id, scope=scope,
                                           target=target)
        await self.reload()  # at once on this node; the others follow the NOTIFY
        return rule

    async def rules(self, scope: str, target: str | None, account_id: str | None
                    ) -> list[Rule]:
        async with self._flushing, connect(self._engine) as conn:
            found = await store.list_rules(conn, scope, target, account_id)
            return [self.pending_fired(r) for r in found]

    async def delete(self, rule_id: str, *, scope: str, target: str | None,
                     account_id: str | None) -> bool:
        async with connect(self._engine, write=True) as conn:
            deleted = await store.delete_rule(conn, rule_id, scope=scope, target=target,
                                              account_id=account_id)
        if deleted:
            await self.reload()
        return deleted

    async def events(self, inbox: str, account_id: str) -> list[store.Event]:
        """The inbox's latest injected failures (newest first), including those this node
        has not written yet."""
        async with self._flushing:
            local = [e for e in self._pending_events
                     if e.inbox == inbox and e.account_id == account_id]
            async with connect(self._engine) as conn:
                stored = await store.recent_events(conn, inbox, account_id, EVENTS_PER_INBOX)
        return (local[::-1] + stored)[:EVENTS_PER_INBOX]
