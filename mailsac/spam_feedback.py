"""Scoring at intake and learning from users: the glue between the spam model and storage.

The model (:mod:`mailsac.spam`) is pure; this service persists every accepted update in
``spam_feedback`` and replays them at start-up, so what the model learned survives
restarts. Learning runs in a worker thread (it hashes the whole message). Each account's
influence is capped inside the model (see :mod:`mailsac.spam.bayes`), and storage follows
the same budget: at most ``per_account`` rows per account and class (never more than the
model's ``account_docs``, 500), and ``max_rows`` rows in total. Beyond either, feedback is
refused with a 403 that says so (the message is not moved), and an update the model did
not apply is never stored.

Operator teaching. Feedback with ``account_id=None`` (the operator account's admin keys,
the ``spam learn`` CLI and ``POST /api/admin/spam/learn``) goes to the model's uncapped
trusted layer: that is how an instance is taught its own mail. The same message taught
twice with the same label by the operator is counted once.

Several nodes on one database. Each node scores with its own copy of the model, so each
follows the table (:meth:`SpamFeedback.follow_forever`): every ``follow_interval`` seconds
it applies the rows other nodes added, so a lesson taught through any node reaches every
node's scores within that interval. Row ids come from a sequence and concurrent inserts
may commit out of order, so each poll re-reads a margin of ids below the highest seen and
skips the ids it already applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import Forbidden
from mailsac.spam import SpamModel, default_model
from mailsac.storage.db import connect
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import spam_feedback

log = logging.getLogger(__name__)

FOLLOW_MARGIN = 1000  # ids below the highest seen that are read again (late commits)
FOLLOW_BATCH = 5000  # rows applied per poll at most


class SpamFeedback:
    """Loads persisted feedback into the shared model and records new feedback."""

    def __init__(self, engine: AsyncEngine, model: SpamModel | None = None, *,
                 max_rows: int = 200_000, per_account: int = 500) -> None:
        self._engine = engine
        self.model = model or default_model()
        self.max_rows = max_rows
        self.per_account = per_account
        self._rows = 0  # stored rows (loaded at start-up, counted up on insert)
        self._last_id = 0  # the highest row id applied to this node's model
        self._applied: set[int] = set()  # applied ids within FOLLOW_MARGIN of _last_id
        self._lock = asyncio.Lock()  # one of: an insert of ours, or a poll of others'
        self.followed = 0  # rows learned from other nodes

    async def load(self) -> int:
        async with self._lock:
            async with connect(self._engine) as conn:
                rows = list(await conn.execute(select(
                    spam_feedback.c.id, spam_feedback.c.update).order_by(spam_feedback.c.id)))
            self._rows = len(rows)
            self._remember([int(r[0]) for r in rows])
        if rows:
            await asyncio.to_thread(self.model.apply_updates, [r[1] for r in rows])
            log.info("replayed %d spam feedback update(s) into the model", len(rows))
        return len(rows)

    def _remember(self, ids: Sequence[int]) -> None:
        if ids:
            self._last_id = max(self._last_id, max(ids))
        floor = self._last_id - FOLLOW_MARGIN
        self._applied = {i for i in self._applied if i > floor}
        self._applied.update(i for i in ids if i > floor)

    async def follow(self) -> int:
        """Apply the rows other nodes stored since the last poll; how many were new."""
        async with self._lock:
            async with connect(self._engine) as conn:
                rows = [(int(r[0]), r[1]) for r in await conn.execute(
                    select(spam_feedback.c.id, spam_feedback.c.update)
                    .where(spam_feedback.c.id > self._last_id - FOLLOW_MARGIN)
                    .order_by(spam_feedback.c.id).limit(FOLLOW_BATCH))]
            new = [(i, update) for i, update in rows if i not in self._applied]
            self._remember([i for i, _ in new])
        if new:
            await asyncio.to_thread(self.model.apply_updates, [u for _, u in new])
            self._rows += len(new)
            self.followed += len(new)
            log.info("learned %d spam feedback update(s) made on other nodes", len(new))
        return len(new)

    async def follow_forever(self, interval: float) -> None:
        """:meth:`follow` every ``interval`` seconds; a failed poll is retried next time."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow()
            except Exception as exc:  # the database may be away: try again later
                log.warning("spam feedback follow failed: %s", type(exc).__name__)

    async def count_rows(self) -> int:
        """Refresh the stored-row count (for processes that do not :meth:`load`)."""
        async with connect(self._engine) as conn:
            self._rows = int((await conn.execute(
                select(func.count()).select_from(spam_feedback))).scalar_one())
        return self._rows

    async def learn_raw(self, raw: bytes, is_spam: bool) -> bool:
        """Operator teaching of a raw message that need not be stored here (bulk seeding);
        False when the same message was already taught with this label."""
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return await self._learn(None, digest, raw, is_spam)

    async def learn(self, account_id: str | None, record: MessageRecord, raw: bytes,
                    is_spam: bool) -> None:
        """Learn a stored message: ``account_id=None`` is the operator (trusted layer)."""
        await self._learn(account_id, record.id, raw, is_spam)

    async def _learn(self, account_id: str | None, message_id: str, raw: bytes,
                     is_spam: bool) -> bool:
        if self._rows >= self.max_rows:
            raise Forbidden(f"Spam feedback storage is full ({self.max_rows} updates); "
                            "ask the operator to raise MAILSAC_SPAM_FEEDBACK_MAX_ROWS")
        if account_id is not None:
            await self._check_account(account_id, is_spam)
        elif await self._taught(message_id, is_spam):
            return False
        update = await asyncio.to_thread(self.model.learn, raw, is_spam,
                                         account_id=account_id)
        if not (update.tokens or update.spam_docs or update.ham_docs or any(update.spent or ())):
            return False  # the model applied nothing: nothing to replay either
        async with self._lock:  # a poll must not apply this row a second time
            async with connect(self._engine, write=True) as conn:
                row_id = (await conn.execute(spam_feedback.insert().values(
                    account_id=account_id, message_id=message_id, is_spam=is_spam,
                    update=update.to_json()).returning(spam_feedback.c.id))).scalar_one()
            self._remember([int(row_id)])
        self._rows += 1
        return True

    async def _taught(self, message_id: str, is_spam: bool) -> bool:
        async with connect(self._engine) as conn:
            found = (await conn.execute(select(spam_feedback.c.id).where(
                spam_feedback.c.account_id.is_(None),
                spam_feedback.c.message_id == message_id,
                spam_feedback.c.is_spam.is_(is_spam)).limit(1))).first()
        return found is not None

    async def _check_account(self, account_id: str, is_spam: bool) -> None:
        limit = int(min(self.per_account, self.model.account_docs))
        async with connect(self._engine) as conn:
            stored = int((await conn.execute(
                select(func.count()).select_from(spam_feedback).where(
                    spam_feedback.c.account_id == account_id,
                    spam_feedback.c.is_spam.is_(is_spam)))).scalar_one())
        if stored >= limit:
            kind = "spam" if is_spam else "not spam"
            raise Forbidden(f"Spam feedback limit reached: your account has already marked "
                            f"{limit} messages as {kind}")
