"""Scoring at intake and learning from users: the glue between the spam model and storage.

The model (:mod:`mailsac.spam`) is pure; this service persists every accepted update in
``spam_feedback`` and replays them at start-up, so what the model learned survives
restarts. Learning runs in a worker thread (it hashes the whole message). Each account's
influence is capped inside the model (see :mod:`mailsac.spam.bayes`).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.spam import SpamModel, default_model
from mailsac.storage.db import connect
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import spam_feedback

log = logging.getLogger(__name__)


class SpamFeedback:
    """Loads persisted feedback into the shared model and records new feedback."""

    def __init__(self, engine: AsyncEngine, model: SpamModel | None = None) -> None:
        self._engine = engine
        self.model = model or default_model()

    async def load(self) -> int:
        async with connect(self._engine) as conn:
            rows = [r[0] for r in await conn.execute(
                select(spam_feedback.c.update).order_by(spam_feedback.c.id))]
        if rows:
            await asyncio.to_thread(self.model.apply_updates, rows)
            log.info("replayed %d spam feedback update(s) into the model", len(rows))
        return len(rows)

    async def learn(self, account_id: str | None, record: MessageRecord, raw: bytes,
                    is_spam: bool) -> None:
        update = await asyncio.to_thread(self.model.learn, raw, is_spam,
                                         account_id=account_id)
        async with connect(self._engine, write=True) as conn:
            await conn.execute(spam_feedback.insert().values(
                account_id=account_id, message_id=record.id, is_spam=is_spam,
                update=update.to_json()))
