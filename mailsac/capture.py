"""Email Capture: the account settings an authenticated SMTP transaction runs under.

An SMTP session authenticated with an account's credentials (:mod:`mailsac.credentials`)
is a *capture* session: its mail is accepted for any recipient domain and stored in each
envelope recipient's inbox like any other mail. With the account's ``capturePrivate`` on,
each copy is also *starred* for the account (``savedBy``), which makes it private to the
account and keeps it from recycling (see :func:`mailsac.delivery.build_records` for which
copies: never one in another account's inbox).

Starred mail is bounded per account (``MAILSAC_MAX_STARRED_PER_ACCOUNT`` and the account's
``messageLimit``, as for ``PUT .../star``). :meth:`Capture.begin` reads the room left once
per transaction; each recipient takes one place (counted before aliases and duplicates
are resolved, so never too few), and a recipient beyond the room is refused at ``RCPT``
with a temporary error: a message is never accepted and then stored public, nor stored
beyond the quota. Concurrent transactions of one account read the same room, so together
they may overshoot it by at most their recipients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.storage import accounts as account_store
from mailsac.storage import messages as queries
from mailsac.storage.db import connect


@dataclass(slots=True)
class CaptureTransaction:
    """One SMTP transaction of a capture session."""

    account_id: str
    private: bool  # capturePrivate: star the copies for the account
    room: int = 0  # starred messages the account may still get (when private)
    limit: int = 0  # its starred-message quota

    @property
    def star_for(self) -> str | None:
        """The account the copies are starred for, or None (public capture)."""
        return self.account_id if self.private else None

    def take(self) -> bool:
        """Count one more recipient; False when a starred copy would exceed the quota."""
        if not self.private:
            return True
        if self.room <= 0:
            return False
        self.room -= 1
        return True


class Capture:
    """Reads an account's capture settings and starred-message room."""

    def __init__(self, engine: AsyncEngine, *, star_limit: Callable[[int], int]) -> None:
        self._engine = engine
        self._star_limit = star_limit  # Visibility.star_limit: the one quota rule

    async def begin(self, account_id: str) -> CaptureTransaction:
        """The settings for a new transaction (raises StorageUnavailable)."""
        async with connect(self._engine) as conn:
            account = await account_store.get_account(conn, account_id)
            if account is None or not account.capture_private:
                return CaptureTransaction(account_id, private=False)
            starred, message_limit = await queries.starred_quota(conn, account_id)
        limit = self._star_limit(message_limit)
        return CaptureTransaction(account_id, private=True, room=max(0, limit - starred),
                                  limit=limit)
