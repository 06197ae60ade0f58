"""Optional learning from confident scores (``MAILSAC_SPAM_AUTOLEARN``, off by default).

When on, a stored message whose score is at least ``spam_at`` is learned as spam and one
at most ``ham_at`` as ham, so the model follows the mail this instance actually receives
without anyone labelling it. The risks, and why it is off by default:

- **It learns its own mistakes.** A confident wrong score is taught back and becomes more
  confident; only messages far from 0.5 are used to keep that rare.
- **Senders can steer it.** Anyone may send mail: a flood of ham-looking messages that
  carry a spammer's words would teach those words as ham.
- **It costs work per message:** the learner reads the raw message and hashes its tokens.

So auto-learning is boxed in like a tenant, never like the operator: every lesson goes
to the capped community layer as one pseudo-account (:data:`AUTO_ACCOUNT`, which no real
account can be named), so all of it together can move a score at most as far as one
account's feedback can, and it stops for a class once that account's quota of stored
lessons (``MAILSAC_SPAM_FEEDBACK_PER_ACCOUNT``) is used. On top of that, at most
``per_hour`` lessons are taken per hour and the queue of candidates is bounded: under a
flood, candidates are dropped, never queued without limit, and intake never waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from mailsac.errors import Forbidden, MailsacError
from mailsac.spam_feedback import SpamFeedback
from mailsac.storage.messages import MessageRecord

log = logging.getLogger(__name__)

AUTO_ACCOUNT = "~autolearn"  # "~" is not allowed in account ids (mailsac.admin.check_name)
QUEUE_SIZE = 256
RECENT_BLOBS = 4096  # a message to several recipients is one blob: learned once


class AutoLearner:
    """Learns confidently scored new mail into the capped community layer."""

    def __init__(self, feedback: SpamFeedback, read_blob: Callable[[str], Awaitable[bytes]],
                 *, spam_at: float, ham_at: float, per_hour: int) -> None:
        self._feedback = feedback
        self._read_blob = read_blob
        self.spam_at = spam_at
        self.ham_at = ham_at
        self.per_hour = per_hour
        self._queue: asyncio.Queue[tuple[MessageRecord, bool]] = asyncio.Queue(QUEUE_SIZE)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._window_start = time.monotonic()
        self._window_count = 0
        self.outcomes = {"learned": 0, "dropped": 0, "capped": 0, "failed": 0}

    def offer(self, records: list[MessageRecord]) -> None:
        """Delivery listener (after each commit): queue confident scores, never block."""
        for record in records:
            if record.spam is None or self.ham_at < record.spam < self.spam_at:
                continue
            if record.blob_key in self._recent:
                continue
            self._recent[record.blob_key] = None
            if len(self._recent) > RECENT_BLOBS:
                self._recent.popitem(last=False)
            try:
                self._queue.put_nowait((record, record.spam >= self.spam_at))
            except asyncio.QueueFull:
                self.outcomes["dropped"] += 1

    def _take_budget(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 3600:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self.per_hour:
            return False
        self._window_count += 1
        return True

    async def run(self) -> None:
        """Learn queued candidates one at a time, within the hourly budget."""
        while True:
            record, is_spam = await self._queue.get()
            if not self._take_budget():
                self.outcomes["dropped"] += 1
                continue
            try:
                raw = await self._read_blob(record.blob_key)
                await self._feedback.learn(AUTO_ACCOUNT, record, raw, is_spam)
                self.outcomes["learned"] += 1
            except Forbidden:  # the pseudo-account's quota for this class is used up
                self.outcomes["capped"] += 1
            except (MailsacError, OSError) as exc:  # deleted meanwhile, database away, ...
                self.outcomes["failed"] += 1
                log.debug("auto-learning skipped message %s: %s", record.id,
                          type(exc).__name__)
