"""The in-process message hub: publish is O(interested subscribers) and never blocks.

Subscribers register interest in inboxes, domains, accounts (the account that owns the
message: a reserved address or a custom domain), or everything. Each has a bounded
queue; a subscriber whose queue is full when an event arrives is dropped (closed with a
reason) rather than allowed to slow delivery or grow memory without bound, as Mailpit
does with full clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

from mailsac.events import Event, MessageDeleted, MessageStored

log = logging.getLogger(__name__)

RECENT_IDS = 8192  # ids of recently published messages remembered for :meth:`seen`


class SubscriptionClosed(Exception):
    """The hub dropped this subscription (its consumer was too slow) or it was closed."""


class Subscription:
    """One consumer's bounded queue of events."""

    def __init__(self, hub: MessageHub, inboxes: frozenset[str], domains: frozenset[str],
                 everything: bool, maxsize: int, accounts: frozenset[str] = frozenset()
                 ) -> None:
        self.hub = hub
        self.inboxes = inboxes
        self.domains = domains
        self.accounts = accounts
        self.everything = everything
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.closed_reason: str | None = None

    async def get(self) -> Event:
        event = await self.queue.get()
        if event is None:
            raise SubscriptionClosed(self.closed_reason or "closed")
        return event

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.hub.unsubscribe(self)
        while not self.queue.empty():  # make room for the wake-up sentinel
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class MessageHub:
    """Fan-out of :mod:`mailsac.events` to subscribers, indexed by inbox and domain."""

    def __init__(self) -> None:
        self._by_inbox: dict[str, set[Subscription]] = defaultdict(set)
        self._by_domain: dict[str, set[Subscription]] = defaultdict(set)
        self._by_account: dict[str, set[Subscription]] = defaultdict(set)
        self._everything: set[Subscription] = set()
        self.dropped = 0
        self.published = 0
        # Insertion-ordered, bounded: lets the cluster listener skip a message this hub
        # already published (its own, or one it caught up on after a reconnect).
        self._recent: dict[str, None] = {}

    @property
    def subscriber_count(self) -> int:
        subs = set(self._everything)
        for group in (*self._by_inbox.values(), *self._by_domain.values(),
                      *self._by_account.values()):
            subs |= group
        return len(subs)

    def subscribe(self, inboxes: Iterable[str] = (), domains: Iterable[str] = (), *,
                  everything: bool = False, maxsize: int = 100,
                  accounts: Iterable[str] = ()) -> Subscription:
        sub = Subscription(self, frozenset(inboxes), frozenset(domains), everything, maxsize,
                           frozenset(accounts))
        if everything:
            self._everything.add(sub)
        for inbox in sub.inboxes:
            self._by_inbox[inbox].add(sub)
        for domain in sub.domains:
            self._by_domain[domain].add(sub)
        for account in sub.accounts:
            self._by_account[account].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._everything.discard(sub)
        for index, keys in ((self._by_inbox, sub.inboxes), (self._by_domain, sub.domains),
                            (self._by_account, sub.accounts)):
            for key in keys:
                group = index.get(key)
                if group is not None:
                    group.discard(sub)
                    if not group:
                        del index[key]

    def _targets(self, event: Event) -> set[Subscription]:
        targets = set(self._everything)
        if isinstance(event, MessageStored):
            for inbox in event.addresses:
                targets |= self._by_inbox.get(inbox, set())
            targets |= self._by_domain.get(event.record.domain, set())
            if event.record.account_id is not None:
                targets |= self._by_account.get(event.record.account_id, set())
        elif isinstance(event, MessageDeleted):
            targets |= self._by_inbox.get(event.inbox, set())
        return targets

    def seen(self, message_id: str) -> bool:
        """Whether a MessageStored for ``message_id`` was published lately (bounded memory)."""
        return message_id in self._recent

    def watched(self) -> tuple[list[str], list[str]]:
        """The inboxes and domains someone subscribed to (for catching up after a gap)."""
        return list(self._by_inbox), list(self._by_domain)

    def watched_accounts(self) -> list[str]:
        """The accounts someone subscribed to (for catching up after a gap)."""
        return list(self._by_account)

    def wants(self, addresses: Iterable[str], domain: str, account: str | None = None) -> bool:
        """Whether an event for these inboxes/domain/owning account would reach anyone."""
        return (bool(self._everything) or domain in self._by_domain
                or (account is not None and account in self._by_account)
                or any(a in self._by_inbox for a in addresses))

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every interested subscriber without waiting for any."""
        self.published += 1
        if isinstance(event, MessageStored):
            self._recent[event.record.id] = None
            if len(self._recent) > RECENT_IDS:
                del self._recent[next(iter(self._recent))]
        for sub in self._targets(event):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("dropping a slow hub subscriber (queue of %d full)",
                            sub.queue.maxsize)
                sub.close("too slow: the event queue overflowed")
