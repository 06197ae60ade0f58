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
If the set overflows (and after a start-up), the next pass falls back to a grouped scan
of the whole table, done in chunks of inbox ranges (keyset pagination over the inbox
index), each chunk within ``scan_timeout``. A chunk that times out is retried smaller;
if it keeps failing, the scan stops where it got to and the next pass resumes it there:
it is never silently skipped.

Deletions are transactions sized by time, not by count: a pacer grows the batch while
transactions stay under ``batch_seconds`` and shrinks it when they take longer (between
``batch`` and ``max_batch`` rows), so a pass over millions of rows does not pay a commit,
a NOTIFY and a blob-key lookup per few hundred rows, and no transaction holds its locks
long or competes with intake for long. Expiry walks the partial index on ``received``
of public mail by key ranges (each batch, and the next pass, starts where the last one
ended; every ``EXPIRY_REWALK`` passes from the start), so it does not re-read the index
entries of what it deleted before VACUUM removes them (millions of them cost seconds);
over-full inboxes are trimmed many per statement. Blobs of
the deleted rows that no other row refers to are removed after each commit, through the
callback, ``blob_batch`` keys at a time. Work yields to the event loop between batches.

With several nodes on one database a pass runs on one node at a time: it holds the
cluster job lock (:mod:`mailsac.storage.joblock`) and the others skip. Every node learns
what the others stored through the cluster notifications (:meth:`touched_items`), so
whichever node holds the lock has the whole dirty set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailsac.errors import StorageUnavailable
from mailsac.storage import joblock
from mailsac.storage import messages as queries
from mailsac.storage import webhooks as webhook_store
from mailsac.storage.db import connect
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import accounts, messages

log = logging.getLogger(__name__)

_PUBLIC = and_(messages.c.account_id.is_(None), messages.c.saved_by.is_(None))
MAX_DIRTY = 50_000
EXPIRY_REWALK = 10  # passes between expiry walks from the start of the index
SCAN_ATTEMPTS = 3  # failed chunks in a row before the scan waits for the next pass
_UNREFERENCED = text(
    "SELECT k FROM unnest(:keys) AS k "
    "WHERE NOT EXISTS (SELECT 1 FROM messages AS m WHERE m.blob_key = k)"
).bindparams(bindparam("keys", type_=ARRAY(Text)))


@dataclass(frozen=True)
class RetentionPolicy:
    public_inbox_limit: int = 6
    public_max_age: timedelta = timedelta(days=4)
    batch: int = 500  # rows per delete transaction: the smallest, and the first
    max_batch: int = 50_000  # the largest
    batch_seconds: float = 0.2  # the pacer aims for transactions this long
    scan_rows: int = 200_000  # index entries per start-up scan chunk, at first
    scan_timeout: float = 2.0  # one scan chunk's limit (below the 2.5 s of connect())
    blob_batch: int = 1_000  # blob keys per drop_blobs call
    webhook_payload_max_age: timedelta = timedelta(hours=72)
    webhook_history_max_age: timedelta = timedelta(days=30)


@dataclass
class SweepReport:
    expired: int = 0
    over_inbox_limit: int = 0
    over_account_limit: int = 0
    webhook_payloads: int = 0
    webhook_rows: int = 0
    transactions: int = 0  # delete transactions
    peak_transaction: float = 0.0  # seconds, the longest of them
    scan_complete: bool | None = None  # None: no grouped scan was due

    @property
    def total(self) -> int:
        return self.expired + self.over_inbox_limit + self.over_account_limit


@dataclass
class _Pacer:
    """A batch size steered towards ``target`` seconds per batch, within [low, high]."""

    size: int
    low: int
    high: int
    target: float

    def update(self, done: int, seconds: float) -> None:
        if done <= 0:
            return
        wanted = int(done * self.target / max(seconds, 1e-4))
        # At most double or halve per step: one fast or slow batch is not a trend.
        self.size = max(self.low, min(self.high, self.size * 2, max(self.size // 2, wanted)))

    def failed(self) -> None:
        self.size = max(self.low, self.size // 4)


@dataclass
class RetentionSweeper:
    """One background task that keeps row counts and disk use bounded."""

    engine: AsyncEngine
    drop_blobs: Callable[[list[str]], Awaitable[None]]
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)
    clock: Callable[[], float] = time.time
    _public_inboxes: set[str] = field(default_factory=set)
    _accounts: set[str] = field(default_factory=set)
    #: The cluster job lock a pass needs (None: no lock, e.g. a single-node test).
    lock_key: tuple[int, int] | None = joblock.RETENTION
    passes: int = 0
    skipped: int = 0  # passes left to another node that held the lock
    _full_scan: bool = True  # after a start-up nobody told us what changed
    _scan_after: str | None = None  # the chunked scan's cursor: inboxes up to here done
    _rows: _Pacer | None = None
    _scan: _Pacer | None = None
    _report: SweepReport = field(default_factory=SweepReport)
    _expired_to: datetime | None = None  # expiry deleted everything older than this
    _expiry_passes: int = 0

    @property
    def scan_pending(self) -> bool:
        """True while a grouped scan is due or unfinished (it resumes at the next pass)."""
        return self._full_scan

    def touched(self, records: Iterable[MessageRecord]) -> None:
        """Called after delivery commits: remember what may now be over a limit."""
        self.touched_items((r.inbox, r.account_id) for r in records)

    def touched_items(self, items: Iterable[tuple[str, str | None]]) -> None:
        """(inbox, account id) pairs stored here or on another node."""
        for inbox, account_id in items:
            if account_id is None:
                self._public_inboxes.add(inbox)
            else:
                self._accounts.add(account_id)
        if len(self._public_inboxes) + len(self._accounts) > MAX_DIRTY:
            self._public_inboxes.clear()
            self._accounts.clear()
            self._full_scan = True
            self._scan_after = None  # what was forgotten may lie behind the cursor

    def _pacers(self) -> tuple[_Pacer, _Pacer]:
        p = self.policy
        if self._rows is None:
            self._rows = _Pacer(p.batch, p.batch, max(p.batch, p.max_batch), p.batch_seconds)
        if self._scan is None:
            low = min(p.scan_rows, 1_000)
            self._scan = _Pacer(p.scan_rows, low, max(p.scan_rows, 4_000_000),
                                p.scan_timeout / 4)
        return self._rows, self._scan

    async def _delete(self, condition: ColumnElement[bool], *extra: Any) -> Sequence[Any]:
        """Delete the rows matching ``condition`` in one transaction, then their blobs
        that no row refers to any more. Returns (blob_key, *extra) per deleted row."""
        pacer = self._pacers()[0]
        started = time.perf_counter()
        try:
            async with connect(self.engine, write=True) as conn:
                rows = (await conn.execute(delete(messages).where(condition)
                                           .returning(messages.c.blob_key, *extra))).all()
                orphans = await _unreferenced(conn, {row[0] for row in rows})
        except (StorageUnavailable, DBAPIError):
            pacer.failed()
            raise
        seconds = time.perf_counter() - started
        pacer.update(len(rows), seconds)
        self._report.transactions += 1
        self._report.peak_transaction = max(self._report.peak_transaction, seconds)
        for i in range(0, len(orphans), self.policy.blob_batch):
            await self.drop_blobs(orphans[i:i + self.policy.blob_batch])
        await asyncio.sleep(0)
        return rows

    async def _expire_public(self) -> int:
        """Delete public mail older than the maximum age, oldest first, by key ranges."""
        cutoff = datetime.fromtimestamp(self.clock(), UTC) - self.policy.public_max_age
        pacer = self._pacers()[0]
        self._expiry_passes += 1
        if self._expiry_passes % EXPIRY_REWALK == 0:
            # Mail can become public and old behind the mark (unstarred, or replayed from
            # the outage journal): now and then walk the index from its start again.
            self._expired_to = None
        removed, m = 0, messages.alias("expiring")
        while True:
            size = pacer.size
            outer, inner = (and_(t.c.account_id.is_(None), t.c.saved_by.is_(None),
                                 t.c.received < cutoff) for t in (messages, m))
            if self._expired_to is not None:
                # Resume where the last batch ended: the deleted rows' index entries stay
                # until VACUUM, and walking millions of them again costs seconds.
                outer = and_(outer, messages.c.received >= self._expired_to)
                inner = and_(inner, m.c.received >= self._expired_to)
            # The batch: a walk of the partial index on received; the rows by their ctid
            # (a TID scan). ``outer`` is checked again on each row: one starred meanwhile
            # is kept.
            batch: Select[Any] = (select(literal_column("expiring.ctid")).where(inner)
                     .order_by(m.c.received).limit(size))
            rows = await self._delete(
                and_(outer, literal_column("messages.ctid")
                     == func.any(func.array(batch.scalar_subquery()))),
                messages.c.received)
            removed += len(rows)
            if rows:
                self._expired_to = max(row[1] for row in rows)
            if len(rows) < size:
                return removed

    async def _trim_inboxes(self, inboxes: Iterable[str]) -> int:
        """Keep the newest ``public_inbox_limit`` public messages of each inbox: many
        inboxes per statement, at most a pacer's batch of rows per transaction."""
        pacer = self._pacers()[0]
        queue, removed = sorted(set(inboxes)), 0
        while queue:
            group_size = max(1, min(len(queue), pacer.size // 4))
            group, queue = queue[:group_size], queue[group_size:]
            per_inbox = max(4, pacer.size // group_size)
            box = func.unnest(bindparam("inboxes", group, type_=ARRAY(Text))) \
                .table_valued("inbox").render_derived(name="box")
            m = messages.alias("m")
            extra = (select(m.c.id)
                     .where(m.c.inbox == box.c.inbox, m.c.account_id.is_(None),
                            m.c.saved_by.is_(None))
                     .order_by(m.c.received.desc(), m.c.id.desc())
                     .offset(self.policy.public_inbox_limit).limit(per_inbox).lateral())
            ids = select(extra.c.id).select_from(box.join(extra, true()))
            rows = await self._delete(messages.c.id.in_(ids), messages.c.inbox)
            removed += len(rows)
            counts = Counter(row[1] for row in rows)
            queue += [inbox for inbox, n in counts.items() if n >= per_inbox]  # not done yet
        return removed

    async def _trim_account(self, account_id: str, limit: int) -> int:
        """Recycle the oldest non-starred mail until the account is within ``limit``."""
        mine = or_(messages.c.account_id == account_id, messages.c.saved_by == account_id)
        async with connect(self.engine) as conn:
            total = await queries.count_messages(conn, mine)
        excess = min(total - limit, self._pacers()[0].size)
        if excess <= 0:
            return 0
        oldest = (select(messages.c.id)
                  .where(messages.c.account_id == account_id, messages.c.saved_by.is_(None))
                  .order_by(messages.c.received, messages.c.id).limit(excess))
        return len(await self._delete(messages.c.id.in_(oldest.scalar_subquery())))

    async def _expire_webhooks(self, report: SweepReport) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        batch = self._pacers()[0].size
        while True:
            async with connect(self.engine, write=True) as conn:
                dropped, deleted = await webhook_store.expire(
                    conn, payloads_before=now - self.policy.webhook_payload_max_age,
                    finished_before=now - self.policy.webhook_history_max_age,
                    batch=batch)
            report.webhook_payloads += dropped
            report.webhook_rows += deleted
            await asyncio.sleep(0)
            if dropped < batch and deleted < batch:
                return

    async def _scan_chunk(self, rows: int) -> tuple[list[str], str | None]:
        """Over-full public inboxes in the next ``rows`` index entries after the cursor,
        and the new cursor (None: the end of the table)."""
        after = self._scan_after
        inbox = messages.c.inbox
        in_range = inbox > after if after is not None else true()
        # write=True only for the transaction: set_config(..., true) lasts until its end
        async with connect(self.engine, write=True) as conn, \
                asyncio.timeout(self.policy.scan_timeout):
            await conn.execute(select(func.set_config(  # the server gives up too
                "statement_timeout", str(max(1, int(self.policy.scan_timeout * 1000))), True)))
            upper = (await conn.execute(select(inbox).where(in_range).order_by(inbox)
                                        .offset(rows).limit(1))).scalar()
            if upper is not None:
                in_range = and_(in_range, inbox <= upper)
            over = await conn.execute(
                select(inbox).where(_PUBLIC, in_range).group_by(inbox)
                .having(func.count() > self.policy.public_inbox_limit))
            return [row[0] for row in over], upper

    async def _scan_all(self, report: SweepReport) -> bool:
        """Resume the chunked grouped scan, trimming what each chunk finds; True when it
        reached the end of the table (then accounts are re-checked too)."""
        pacer = self._pacers()[1]
        failures = 0
        while True:
            size = pacer.size
            started = time.perf_counter()
            try:
                found, upper = await self._scan_chunk(size)
            except (StorageUnavailable, DBAPIError, TimeoutError) as exc:
                pacer.failed()
                failures += 1
                if failures >= SCAN_ATTEMPTS:
                    log.warning("retention scan chunk failed %d times (%s); resuming after "
                                "%r at the next pass", failures, type(exc).__name__,
                                self._scan_after)
                    return False
                continue
            failures = 0
            pacer.update(size, time.perf_counter() - started)
            report.over_inbox_limit += await self._trim_inboxes(found)
            self._scan_after = upper
            if upper is None:
                async with connect(self.engine) as conn:
                    owners = await conn.execute(select(accounts.c.id))
                    self._accounts.update(row[0] for row in owners)
                return True

    async def sweep_once(self) -> SweepReport:
        report = self._report = SweepReport()
        if self._full_scan:
            report.scan_complete = await self._scan_all(report)
            if report.scan_complete:
                self._full_scan, self._scan_after = False, None
        report.expired = await self._expire_public()
        inboxes, self._public_inboxes = self._public_inboxes, set()
        report.over_inbox_limit += await self._trim_inboxes(inboxes)
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
                     "%d over account limits (%d transactions, longest %.3f s)", report.total,
                     report.expired, report.over_inbox_limit, report.over_account_limit,
                     report.transactions, report.peak_transaction)
        return report

    async def locked_pass(self) -> SweepReport | None:
        """One pass if this node gets the cluster lock; None when another node holds it."""
        if self.lock_key is None:
            self.passes += 1
            return await self.sweep_once()
        async with joblock.exclusive(self.engine, self.lock_key) as held:
            if not held:
                self.skipped += 1
                log.debug("retention pass skipped: another node holds the lock")
                return None
            self.passes += 1
            return await self.sweep_once()

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.locked_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed; will retry")
            await asyncio.sleep(interval)


async def _unreferenced(conn: AsyncConnection, keys: set[str]) -> list[str]:
    """The ``keys`` no message row refers to (one array parameter, however many)."""
    if not keys:
        return []
    return sorted(row[0] for row in await conn.execute(_UNREFERENCED, {"keys": list(keys)}))
