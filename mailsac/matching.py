"""Which messages a wait means: criteria (subject, from, to, contains) and scopes (one inbox,
one custom domain, a whole account), each in a Python form and an SQL form.

The SQL form only *narrows* the candidates (``ILIKE`` over JSON text is looser than the
Python test); the Python form decides, for stored rows and for hub events alike, so both
paths of a wait agree. Every test is a case-insensitive substring match (``str.lower``,
like PostgreSQL's ``ILIKE``). ``contains`` needs the bodies: :class:`BodyMatcher` answers
it from a per-message *haystack* (subject, text, HTML; lower-cased, each part capped at
:data:`BODY_SCAN_CHARS`) computed once per message off the event loop by
:class:`mailsac.rendering.Renderings`, so many waiters on one message share one parse.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, and_, or_

from mailsac.errors import InvalidRequest
from mailsac.forwarding.hub import MessageHub, Subscription
from mailsac.mime.bodies import text_body
from mailsac.mime.parse import ParsedMessage
from mailsac.singleflight import SingleFlight
from mailsac.storage.messages import MessageRecord, contains
from mailsac.storage.models import messages
from mailsac.visibility import record_visible, visible_to

MAX_TERM = 256  # characters of one criterion (an ILIKE costs rows x term)
BODY_SCAN_CHARS = 1_000_000  # characters of the text and of the HTML body ``contains`` sees
INLINE_SCAN_CHARS = 64 * 1024  # larger haystacks are searched in a worker thread
_SEPARATOR = "\x00"  # between subject, text and HTML: a term never spans two of them


def _in_addresses(term: str, addrs: list[dict[str, str]]) -> bool:
    """``term`` in one name or one address (each field apart, as in their JSON text)."""
    return any(term in str(a.get(field) or "").lower()
               for a in addrs for field in ("name", "address"))


def _json_safe(term: str) -> bool:
    """Whether ``term`` appears verbatim in the JSON text of an address list (no escapes)."""
    return not any(ch in term for ch in '"\\') and all(ch >= " " for ch in term)


@dataclass(frozen=True, slots=True)
class Criteria:
    """All given terms must match (lower-cased substrings); None means "any"."""

    subject: str | None = None
    sender: str | None = None
    to: str | None = None
    contains: str | None = None

    @classmethod
    def of(cls, *, subject: str | None = None, sender: str | None = None,
           to: str | None = None, contains: str | None = None) -> Criteria:
        """Criteria from user input: empty terms are dropped, long ones refused (400)."""
        terms = {"subject": subject, "from": sender, "to": to, "contains": contains}
        for name, term in terms.items():
            if term is not None and len(term) > MAX_TERM:
                raise InvalidRequest(f"{name} is limited to {MAX_TERM} characters")
        return cls(*(term.lower() if term else None for term in terms.values()))

    def cheap_match(self, record: MessageRecord) -> bool:
        """Every criterion but ``contains`` (metadata only: no body is read)."""
        if self.subject and self.subject not in record.subject.lower():
            return False
        if self.sender and not _in_addresses(self.sender, record.from_addrs):
            return False
        if self.to and self.to not in record.inbox and \
                not _in_addresses(self.to, record.to_addrs):
            return False
        return True

    def sql(self) -> list[ColumnElement[bool]]:
        """Conditions that keep every row :meth:`cheap_match` accepts (and maybe more)."""
        found: list[ColumnElement[bool]] = []
        if self.subject:
            found.append(contains(messages.c.subject, self.subject))
        if self.sender and _json_safe(self.sender):
            found.append(contains(messages.c.from_addrs, self.sender))
        if self.to and _json_safe(self.to):
            found.append(or_(contains(messages.c.to_addrs, self.to),
                             contains(messages.c.inbox, self.to)))
        return found


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a wait looks: ``inbox`` (one address, visibility rules), ``domain`` (a custom
    domain's mail owned by the account) or ``account`` (all mail the account owns: its
    private addresses and custom domains)."""

    kind: Literal["inbox", "domain", "account"]
    value: str  # the inbox, the domain, or the account id
    account_id: str  # the caller's account

    def holds(self, record: MessageRecord) -> bool:
        if self.kind == "inbox":
            return record.inbox == self.value and record_visible(record, self.account_id)
        if self.kind == "domain" and record.domain != self.value:
            return False
        return record.account_id == self.account_id

    def sql(self) -> ColumnElement[bool]:
        if self.kind == "inbox":
            return and_(messages.c.inbox == self.value, visible_to(self.account_id))
        owned = messages.c.account_id == self.account_id
        return and_(messages.c.domain == self.value, owned) if self.kind == "domain" else owned

    def subscribe(self, hub: MessageHub, maxsize: int) -> Subscription:
        """A hub subscription that receives (at least) every message this scope holds."""
        if self.kind == "inbox":
            return hub.subscribe([self.value], maxsize=maxsize)
        if self.kind == "domain":
            return hub.subscribe(domains=[self.value], maxsize=maxsize)
        return hub.subscribe(accounts=[self.account_id], maxsize=maxsize)


def match_haystack(parsed: ParsedMessage) -> str:
    """What ``contains`` searches (a :mod:`mailsac.rendering` variant, run off the loop):
    the subject, the text body (or the text of the HTML) and the HTML as sent, lower-cased,
    each body capped at :data:`BODY_SCAN_CHARS` characters."""
    parts = (parsed.subject, text_body(parsed)[:BODY_SCAN_CHARS],
             (parsed.html or "")[:BODY_SCAN_CHARS])
    return _SEPARATOR.join(part.lower() for part in parts)


class BodyMatcher:
    """Answers "does this message contain that term".

    ``haystack`` returns the message's :func:`match_haystack`, computed once per message
    off the loop and shared by every asker (:class:`mailsac.rendering.Renderings`);
    ``peek`` returns it only if it is ready (cached), which saves the awaiting. A small
    haystack is searched at once, inline (cheaper than any bookkeeping); a large one in a
    worker thread, once per (message, term) however many ask at the same time, and the
    answer is remembered (bounded)."""

    def __init__(self, haystack: Callable[[MessageRecord], Awaitable[str]],
                 peek: Callable[[MessageRecord], str | None] = lambda record: None,
                 remember: int = 4096) -> None:
        self._haystack = haystack
        self._peek = peek
        self._answers: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._flights: SingleFlight[tuple[str, str], bool] = SingleFlight(self._remember_answer)
        self._remember = remember
        self.searches = 0  # searches actually run (for tests and the benchmark)

    async def contains(self, record: MessageRecord, term: str) -> bool:
        haystack = self._peek(record)
        if haystack is None:
            haystack = await self._haystack(record)
        if len(haystack) <= INLINE_SCAN_CHARS:
            self.searches += 1
            return term in haystack
        key = (record.blob_key, term)
        answer = self._answers.get(key)
        if answer is not None:
            return answer
        return await self._flights.run(key, lambda: self._search(haystack, term))

    def _remember_answer(self, key: tuple[str, str], answer: bool) -> None:
        self._answers[key] = answer
        if len(self._answers) > self._remember:
            self._answers.popitem(last=False)

    async def _search(self, haystack: str, term: str) -> bool:
        self.searches += 1
        return await asyncio.to_thread(haystack.__contains__, term)
