"""Events the message hub carries (published by delivery and the mailbox service)."""

from __future__ import annotations

from dataclasses import dataclass

from mailsac.storage.messages import MessageRecord


@dataclass(frozen=True, slots=True)
class MessageStored:
    """A message was committed. ``addresses`` are the inboxes whose subscribers care: the
    inbox it is stored in plus any reserved/catch-all address routed to it."""

    record: MessageRecord
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    message_id: str
    inbox: str


Event = MessageStored | MessageDeleted
