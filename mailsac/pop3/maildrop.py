"""A session's maildrop: the inbox's visible messages as they were at login.

RFC 1939 §5: messages are numbered from 1 for the life of the session and a number never
refers to another message, so the list is frozen when the session enters the TRANSACTION
state (oldest first, so message 1 is the oldest). Mail arriving later shows up in the
next session. ``DELE`` only marks an entry; marks are undone by ``RSET`` and carried out
in the UPDATE state after ``QUIT`` (RFC 1939 §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailsac.storage.messages import MessageRecord


class NoSuchMessage(Exception):
    """A message-number argument that is malformed, out of range or marked deleted."""


@dataclass(slots=True)
class Entry:
    """One message of the maildrop with its session-stable number.

    Only the id and size are kept (a session may hold thousands of entries); ``RETR``
    and ``TOP`` fetch the message again, so they see deletions made elsewhere.
    """

    number: int
    uid: str
    """The RFC 1939 §7 unique-id: the message's API ``_id`` (printable ASCII)."""
    size: int
    deleted: bool = False


class Maildrop:
    """The frozen, numbered message list of one POP3 session."""

    def __init__(self, records: Sequence[MessageRecord]) -> None:
        """``records`` must be ordered oldest first."""
        self._entries = [Entry(i, record.id, record.size)
                         for i, record in enumerate(records, start=1)]

    @property
    def live(self) -> list[Entry]:
        """Entries not marked deleted, by number."""
        return [e for e in self._entries if not e.deleted]

    @property
    def marked(self) -> list[Entry]:
        return [e for e in self._entries if e.deleted]

    @property
    def count(self) -> int:
        return sum(1 for e in self._entries if not e.deleted)

    @property
    def octets(self) -> int:
        return sum(e.size for e in self._entries if not e.deleted)

    def summary(self) -> str:
        return f"maildrop has {self.count} messages ({self.octets} octets)"

    def lookup(self, arg: str) -> Entry:
        """The entry a message-number argument names (RFC 1939 §3), if not deleted."""
        if not arg.isascii() or not arg.isdigit() or len(arg) > 9:
            raise NoSuchMessage(f"invalid message number {arg[:20]!r}")
        number = int(arg)
        if not 1 <= number <= len(self._entries):
            raise NoSuchMessage(
                f"no such message, only {len(self._entries)} messages in maildrop")
        entry = self._entries[number - 1]
        if entry.deleted:
            raise NoSuchMessage(f"message {number} already deleted")
        return entry

    def reset(self) -> None:
        """``RSET``: unmark every message marked as deleted."""
        for entry in self._entries:
            entry.deleted = False
