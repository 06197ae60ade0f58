"""Retention: recycle old public mail and enforce per-inbox and per-account caps.

Rules (all configurable): a public inbox keeps at most ``public_inbox_limit`` newest
messages and nothing older than ``public_max_age``; an account's private mail is bounded
by its ``message_limit`` (starred messages count towards it but are never recycled; the
oldest non-starred go first). Metadata and blobs are deleted together. Webhook/Slack
delivery rows lose their payload after ``webhook_payload_max_age`` (at once when their
message is deleted: a database trigger) and finished rows go after
``webhook_history_max_age``.

The sweeper never scans the whole table on the hot path: delivery reports which inboxes
and accounts received mail (a bounded "dirty" set), and each pass only re-checks those.
If the set overflows, the next pass falls back to one grouped scan. Work is done in
bounded batches with a yield between them, so a pass never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.storage import messages as queries
from mailsac.storage import webhooks as webhook_store
from mailsac.storage.db import connect
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import accounts, messages

log = logging.getLogger(__name__)

_PUBLIC = and_(messages.c.account_id.is_(None), messages.c.saved_by.is_(None))
MAX_DIRTY = 50_000


@dataclass(frozen=True)
class RetentionPolicy:
    public_inbox_limit: int = 6
    public_max_age: timedelta = timedelta(days=4)
    batch: int = 500
    webhook_payload_max_age: timedelta = timedelta(hours=72)
    webhook_history_max_age: timedelta = timedelta(days=30)


@dataclass
class SweepReport:
    expired: int = 0
    over_inbox_limit: int = 0
    over_account_limit: int = 0
    webhook_payloads: int = 0
    webhook_rows: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.over_inbox_limit + self.over_account_limit


@dataclass
class RetentionSweeper:
    """One background task that keeps row counts and disk use bounded."""

    engine: AsyncEngine
    drop_blobs: Callable[[list[str]], Awaitable[None]]
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)
    clock: Callable[[], float] = time.time
    _public_inboxes: set[str] = field(default_factory=set)
    _accounts: set[str] = field(default_factory=set)
    _full_scan: bool = True  # after a start-up nobody told us what changed

    def touched(self, records: Iterable[MessageRecord]) -> None:
        """Called after delivery commits: remember what may now be over a limit."""
        for record in records:
            if record.account_id is None:
                self._public_inboxes.add(record.inbox)
            else:
                self._accounts.add(record.account_id)
        if len(self._public_inboxes) + len(self._accounts) > MAX_DIRTY:
            self._public_inboxes.clear()
            self._accounts.clear()
            self._full_scan = True

    async def _delete(self, condition: ColumnElement[bool]) -> int:
        async with connect(self.engine, write=True) as conn:
            keys = await queries.delete_messages(conn, condition)
            orphans = await queries.unreferenced_blob_keys(conn, keys)
        await self.drop_blobs(orphans)
        await asyncio.sleep(0)
        return len(keys)

    async def _expire_public(self) -> int:
        cutoff = datetime.fromtimestamp(self.clock(), UTC) - self.policy.public_max_age
        removed = 0
        while True:
            oldest = (select(messages.c.id).where(_PUBLIC, messages.c.received < cutoff)
                      .order_by(messages.c.received).limit(self.policy.batch))
            count = await self._delete(messages.c.id.in_(oldest.scalar_subquery()))
            removed += count
            if count < self.policy.batch:
                return removed

    async def _trim_inbox(self, inbox: str) -> int:
        extra = (select(messages.c.id).where(_PUBLIC, messages.c.inbox == inbox)
                 .order_by(messages.c.received.desc(), messages.c.id.desc())
                 .offset(self.policy.public_inbox_limit).limit(self.policy.batch))
        return await self._delete(messages.c.id.in_(extra.scalar_subquery()))

    async def _trim_account(self, account_id: str, limit: int) -> int:
        """Recycle the oldest non-starred mail until the account is within ``limit``."""
        mine = or_(messages.c.account_id == account_id, messages.c.saved_by == account_id)
        async with connect(self.engine) as conn:
            total = await queries.count_messages(conn, mine)
        excess = min(total - limit, self.policy.batch)
        if excess <= 0:
            return 0
        oldest = (select(messages.c.id)
                  .where(messages.c.account_id == account_id, messages.c.saved_by.is_(None))
                  .order_by(messages.c.received, messages.c.id).limit(excess))
        return await self._delete(messages.c.id.in_(oldest.scalar_subquery()))

    async def _expire_webhooks(self, report: SweepReport) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        while True:
            async with connect(self.engine, write=True) as conn:
                dropped, deleted = await webhook_store.expire(
                    conn, payloads_before=now - self.policy.webhook_payload_max_age,
                    finished_before=now - self.policy.webhook_history_max_age,
                    batch=self.policy.batch)
            report.webhook_payloads += dropped
            report.webhook_rows += deleted
            await asyncio.sleep(0)
            if dropped < self.policy.batch and deleted < self.policy.batch:
                return

    async def _scan_all(self) -> None:
        async with connect(self.engine) as conn:
            over = await conn.execute(
                select(messages.c.inbox).where(_PUBLIC).group_by(messages.c.inbox)
                .having(func.count() > self.policy.public_inbox_limit))
            self._public_inboxes.update(row[0] for row in over)
            owners = await conn.execute(select(accounts.c.id))
            self._accounts.update(row[0] for row in owners)

    async def sweep_once(self) -> SweepReport:
        report = SweepReport()
        if self._full_scan:
            self._full_scan = False
            await self._scan_all()
        report.expired = await self._expire_public()
        inboxes, self._public_inboxes = self._public_inboxes, set()
        for inbox in sorted(inboxes):
            while (n := await self._trim_inbox(inbox)) > 0:
                report.over_inbox_limit += n
        account_ids, self._accounts = self._accounts, set()
        if account_ids:
            async with connect(self.engine) as conn:
                limits = dict((await conn.execute(
                    select(accounts.c.id, accounts.c.message_limit)
                    .where(accounts.c.id.in_(sorted(account_ids))))).all())
            for account_id, limit in sorted(limits.items()):
                while (n := await self._trim_account(account_id, limit)) > 0:
                    report.over_account_limit += n
        await self._expire_webhooks(report)
        if report.webhook_payloads or report.webhook_rows:
            log.info("retention dropped %d webhook payload(s) and %d finished delivery row(s)",
                     report.webhook_payloads, report.webhook_rows)
        if report.total:
            log.info("retention recycled %d message(s): %d expired, %d over inbox limits, "
                     "%d over account limits", report.total, report.expired,
                     report.over_inbox_limit, report.over_account_limit)
        return report

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed; will retry")
            await asyncio.sleep(interval)
