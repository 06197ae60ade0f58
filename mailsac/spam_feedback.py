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
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import Forbidden
from mailsac.spam import SpamModel, default_model
from mailsac.storage.db import connect
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import spam_feedback

log = logging.getLogger(__name__)


class SpamFeedback:
    """Loads persisted feedback into the shared model and records new feedback."""

    def __init__(self, engine: AsyncEngine, model: SpamModel | None = None, *,
                 max_rows: int = 200_000, per_account: int = 500) -> None:
        self._engine = engine
        self.model = model or default_model()
        self.max_rows = max_rows
        self.per_account = per_account
        self._rows = 0  # stored rows (loaded at start-up, counted up on insert)

    async def load(self) -> int:
        async with connect(self._engine) as conn:
            rows = [r[0] for r in await conn.execute(
                select(spam_feedback.c.update).order_by(spam_feedback.c.id))]
        self._rows = len(rows)
        if rows:
            await asyncio.to_thread(self.model.apply_updates, rows)
            log.info("replayed %d spam feedback update(s) into the model", len(rows))
        return len(rows)

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
        async with connect(self._engine, write=True) as conn:
            await conn.execute(spam_feedback.insert().values(
                account_id=account_id, message_id=message_id, is_spam=is_spam,
                update=update.to_json()))
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
