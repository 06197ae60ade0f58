"""The synchronous client: :class:`Client`, :class:`Inbox`, :class:`Domain`, :class:`Message`.

Each method builds its flow in :mod:`mailsac.client.ops` and runs it over ``httpx.Client``;
:mod:`mailsac.client.aio` is the same surface with ``await``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import httpx

from mailsac.client import ops
from mailsac.client.errors import ConnectionFailed
from mailsac.client.models import (
    Account,
    Address,
    Attachment,
    ChaosRule,
    Code,
    DomainInfo,
    Extraction,
    Link,
    MessageData,
    Stats,
    Validation,
)
from mailsac.client.ops import Call, Criteria, Flow, WaitTarget

T = TypeVar("T")


class _Waits:
    """``wait``, ``wait_many`` and ``expect`` over one :class:`WaitTarget`: an inbox, a
    custom domain, or every private address and custom domain of the account."""

    def _wait_scope(self) -> tuple[Client, WaitTarget]:
        raise NotImplementedError

    def wait(self, *, subject: str | None = None, from_: str | None = None,
             to: str | None = None, contains: str | None = None,
             since: datetime | str | None = None, timeout: float = 30.0) -> Message:
        """The oldest message received at/after ``since`` that matches every given
        criterion (case-insensitive substrings; ``contains`` looks in subject, text and
        HTML). Without ``since`` mail already there counts; to wait only for mail that an
        action causes, use :meth:`expect` or pass a time taken before the action.
        Raises :class:`WaitTimeout` (listing what did arrive) after ``timeout`` seconds."""
        client, target = self._wait_scope()
        found = client._run(ops.wait(target, Criteria(subject, from_, to, contains),
                                     since=since, timeout=timeout))
        return client._message(found[0])

    def wait_many(self, count: int, *, subject: str | None = None, from_: str | None = None,
                  to: str | None = None, contains: str | None = None,
                  since: datetime | str | None = None, timeout: float = 30.0
                  ) -> list[Message]:
        """Wait until ``count`` matching messages are there; oldest first."""
        client, target = self._wait_scope()
        return client._messages(ops.wait(target, Criteria(subject, from_, to, contains),
                                         since=since, timeout=timeout, count=count))

    def expect(self, *, subject: str | None = None, from_: str | None = None,
               to: str | None = None, contains: str | None = None,
               timeout: float = 30.0) -> Pending[Message]:
        """A :class:`Pending` wait: ``since`` is when the ``with`` block starts (by the
        server's clock)."""
        client, target = self._wait_scope()
        return Pending(lambda since: self.wait(subject=subject, from_=from_, to=to,
                                               contains=contains, since=since,
                                               timeout=timeout),
                       lambda: client._run(ops.expect_since(target)))


class Client(_Waits):
    """A Mailsac-compatible API client (ours adds waits, extraction and chaos rules).

    ``Client("http://127.0.0.1:8080", key="k_...")``; use as a context manager or call
    :meth:`close`. ``timeout`` bounds ordinary requests (waits get their own)."""

    def __init__(self, base_url: str, key: str | None = None, *, timeout: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Mailsac-Key": key} if key else {}
        self._http = http or httpx.Client(base_url=self.base_url, headers=headers,
                                          timeout=timeout)
        if http is not None and key:
            self._http.headers["Mailsac-Key"] = key

    @classmethod
    def from_env(cls, **kw: Any) -> Client:
        """``MAILSAC_URL`` (default ``http://127.0.0.1:8080``) and ``MAILSAC_KEY``."""
        return cls(os.environ.get("MAILSAC_URL", "http://127.0.0.1:8080"),
                   os.environ.get("MAILSAC_KEY"), **kw)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout)
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"cannot reach mailsac at {self.base_url} ({call.method} {call.path}): "
                f"{exc!r}") from exc
        return ops.check(call, response)

    def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(self._send(call))
        except StopIteration as done:
            return cast(T, done.value)

    def _message(self, data: dict[str, Any]) -> Message:
        return Message(**MessageData.fields_from_json(data), client=self)

    def _messages(self, flow: Flow[list[dict[str, Any]]]) -> list[Message]:
        return [self._message(m) for m in self._run(flow)]

    # -- resources ----------------------------------------------------------------------------

    def inbox(self, email: str) -> Inbox:
        """One address's inbox (no request is made)."""
        return Inbox(self, email)

    def domain(self, name: str) -> Domain:
        """One custom domain of the account (no request is made)."""
        return Domain(self, name)

    def _wait_scope(self) -> tuple[Client, WaitTarget]:
        return self, WaitTarget.account()

    @property
    def chaos(self) -> ChaosRules:
        """Service-wide SMTP failure rules (operator key only)."""
        return ChaosRules(self, "/api/admin/chaos")

    def message(self, email: str, message_id: str) -> Message:
        return self._message(self._run(ops.get_message(email, message_id)))

    # -- account-wide -------------------------------------------------------------------------

    def account_messages(self, limit: int = 20, skip: int = 0,
                         since: datetime | None = None) -> list[Message]:
        """``GET /api/inbox``: the account's private mail, newest first."""
        return self._messages(ops.account_messages(limit, skip, since))

    def filter(self, *, subject: str | None = None, from_: str | None = None,
               to: str | None = None) -> list[Message]:
        """``GET /api/inbox-filter`` (all given criteria must match)."""
        return self._messages(ops.filter_messages(subject, from_, to))

    def search(self, query: str) -> list[Message]:
        """``GET /api/inbox-search`` (sender, recipients or subject)."""
        return self._messages(ops.search_messages(query))

    def starred(self, limit: int = 20, skip: int = 0) -> list[Message]:
        return self._messages(ops.starred_messages(limit, skip))

    def addresses(self) -> list[Address]:
        """The account's reserved addresses."""
        return self._run(ops.list_addresses())

    def reserve_many(self, emails: list[str]) -> list[Address]:
        return self._run(ops.reserve_many(emails))

    def domains(self) -> list[DomainInfo]:
        return self._run(ops.list_domains())

    def me(self) -> Account:
        return self._run(ops.me())

    def set_capture_private(self, value: bool) -> Account:
        return self._run(ops.set_capture_private(value))

    def stats(self) -> Stats:
        return self._run(ops.stats())

    def validate(self, email: str) -> Validation:
        return self._run(ops.validate(email))

    def validate_many(self, emails: list[str]) -> list[Validation]:
        return self._run(ops.validate_many(emails))

    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (no key needed)."""
        return self._run(ops.health())

    # -- admin (operator key) -----------------------------------------------------------------

    def create_account(self, account_id: str, *, email: str | None = None,
                       message_limit: int | None = None,
                       private_address_credits: int | None = None) -> dict[str, Any]:
        return self._run(ops.create_account(account_id, email, message_limit,
                                            private_address_credits))

    def create_key(self, account_id: str, name: str, *, admin: bool = False) -> str:
        """A new API key of ``account_id`` (its plain text is only shown this once)."""
        return self._run(ops.create_key(account_id, name, admin))

    def add_domain(self, domain: str, account_id: str, *, catch_all: bool = False
                   ) -> DomainInfo:
        return self._run(ops.add_domain(domain, account_id, catch_all))


class Pending(Generic[T]):
    """A wait whose ``since`` is taken when the ``with`` block starts, so mail that your
    action causes is found even if it lands before the wait request is sent::

        with inbox.expect(subject="Welcome") as pending:
            app.sign_up(inbox.email)
        msg = pending.result()   # already waited for when the block ended

    Leaving the block without an exception waits (raising :class:`WaitTimeout`);
    :meth:`result` may also be called inside the block."""

    def __init__(self, run: Callable[[datetime], T],
                 start: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._run = run
        self._start = start
        self.since: datetime | None = None
        self._done = False
        self._value: T | None = None

    def __enter__(self) -> Pending[T]:
        self.since = self._start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and not self._done:
            self.result()

    def result(self) -> T:
        if not self._done:
            if self.since is None:
                raise RuntimeError("use expect() as a context manager: with ... as pending:")
            self._value = self._run(self.since)
            self._done = True
        return cast(T, self._value)


class Inbox(_Waits):
    """One address: its messages, waits, reservation settings and chaos rules."""

    def __init__(self, client: Client, email: str) -> None:
        self.client = client
        self.email = email

    def __repr__(self) -> str:
        return f"Inbox({self.email!r})"

    def _wait_scope(self) -> tuple[Client, WaitTarget]:
        return self.client, WaitTarget.inbox(self.email)

    def __str__(self) -> str:
        return self.email

    def messages(self, limit: int = 20, until: datetime | None = None) -> list[Message]:
        """Newest first (``until``: page backwards)."""
        return self.client._messages(ops.list_messages(self.email, limit, until))

    def count(self) -> int:
        return self.client._run(ops.count_messages(self.email))

    def get(self, message_id: str) -> Message:
        return self.client.message(self.email, message_id)

    def delete(self, message_id: str) -> None:
        self.client._run(ops.delete_message(self.email, message_id))

    def purge(self) -> None:
        """Delete every message (starred ones are kept)."""
        self.client._run(ops.purge_inbox(self.email))

    def info(self) -> Address:
        """``GET /api/addresses/{email}``."""
        return self.client._run(ops.get_address(self.email))

    def reserve(self, **settings: Any) -> Address:
        """Make the address private to the account; ``settings``: forward, enablews,
        webhook, webhook_slack, webhook_slack_to_from, info."""
        return self.client._run(ops.reserve_address(self.email,
                                                    ops.address_settings(**settings)))

    def update(self, **settings: Any) -> Address:
        return self.client._run(ops.update_address(self.email,
                                                   ops.address_settings(**settings)))

    def release(self, *, delete_messages: bool = False) -> Address:
        return self.client._run(ops.release_address(self.email, delete_messages))

    def availability(self) -> dict[str, Any]:
        return self.client._run(ops.availability(self.email))

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        return self.client._run(ops.webhook_deliveries(self.email))

    @property
    def chaos(self) -> ChaosRules:
        """SMTP failure rules for mail to this (reserved) address."""
        return ChaosRules(self.client, f"{ops.inbox_path(self.email)}/chaos")


class Domain(_Waits):
    """A custom domain of the account: its mail, domain-wide waits and chaos rules."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"Domain({self.name!r})"

    def _wait_scope(self) -> tuple[Client, WaitTarget]:
        return self.client, WaitTarget.domain(self.name)

    def messages(self, limit: int = 20, until: datetime | None = None) -> list[Message]:
        return self.client._messages(ops.domain_messages(self.name, limit, until))

    def purge(self) -> None:
        """Delete all the domain's mail (starred kept)."""
        self.client._run(ops.purge_domain(self.name))

    @property
    def chaos(self) -> ChaosRules:
        return ChaosRules(self.client, f"{ops.domain_path(self.name)}/chaos")


class ChaosRules:
    """The SMTP failure rules of one scope (an address, a domain, or service-wide)."""

    def __init__(self, client: Client, base: str) -> None:
        self.client = client
        self.base = base

    def list(self) -> list[ChaosRule]:
        return self.client._run(ops.chaos_list(self.base))

    def add(self, stage: str, action: str = "reply", *, code: int | None = None,
            message: str | None = None, delay_seconds: float | None = None,
            probability: float | None = None, times: int | None = None,
            expires_in_seconds: float | None = None) -> ChaosRule:
        """At ``stage`` (connect, mail, rcpt, data): ``reply`` with ``code``/``message``,
        ``delay`` the reply or ``drop`` the connection; with a ``probability`` or for the
        next ``times`` attempts; the rule expires after ``expires_in_seconds``."""
        body = ops.chaos_body(stage, action, code=code, message=message,
                              delay_seconds=delay_seconds, probability=probability,
                              times=times, expires_in_seconds=expires_in_seconds)
        return self.client._run(ops.chaos_add(self.base, body))

    def remove(self, rule_id: str) -> None:
        self.client._run(ops.chaos_remove(self.base, rule_id))

    def clear(self) -> None:
        for rule in self.list():
            self.remove(rule.id)


@dataclass(eq=False, repr=False)
class Message(MessageData):
    """A message; ``codes``, ``links``, ``action_link`` (one ``/extract`` request),
    ``text`` and ``html`` are fetched on first use and cached."""

    client: Client = field(repr=False, compare=False, kw_only=True)
    _extraction: Extraction | None = field(default=None, init=False, repr=False)
    _text: str | None = field(default=None, init=False, repr=False)
    _html: str | None = field(default=None, init=False, repr=False)

    def extraction(self) -> Extraction:
        if self._extraction is None:
            self._extraction = self.client._run(ops.extract(self.inbox, self.id))
        return self._extraction

    @property
    def codes(self) -> list[Code]:
        """Likely one-time codes, most likely first."""
        return self.extraction().codes

    @property
    def code(self) -> str:
        """The most likely one-time code (``LookupError`` naming the message if none)."""
        if not self.codes:
            raise LookupError(f"no one-time code found in message {self.id} "
                              f"({self.subject!r} from {self.sender}) of {self.inbox}")
        return self.codes[0].value

    @property
    def links(self) -> list[Link]:
        """Links with anchor text and kind, in document order."""
        return self.extraction().links

    @property
    def action_link(self) -> Link | None:
        """The most likely link the mail wants clicked (confirm, verify, reset, ...)."""
        return self.extraction().action_link

    @property
    def text(self) -> str:
        """The plain-text body (derived from the HTML when there is no text part)."""
        if self._text is None:
            self._text = self.client._run(ops.text_body("text", self.inbox, self.id))
        return self._text

    @property
    def html(self) -> str:
        """The HTML as sent (``/api/dirty``: ``cid:`` images inlined)."""
        if self._html is None:
            self._html = self.client._run(ops.text_body("dirty", self.inbox, self.id))
        return self._html

    def sanitized_html(self) -> str:
        """``/api/body``: the HTML without scripts, forms or remote images."""
        return self.client._run(ops.text_body("body", self.inbox, self.id))

    def raw(self) -> bytes:
        return self.client._run(ops.raw_message(self.inbox, self.id))

    def headers(self) -> dict[str, list[str]]:
        """Lower-cased header name -> its values."""
        return self.client._run(ops.headers(self.inbox, self.id))

    def headers_ordered(self) -> list[tuple[str, str]]:
        return self.client._run(ops.headers_ordered(self.inbox, self.id))

    def attachments(self) -> list[Attachment]:
        return self.client._run(ops.attachments(self.inbox, self.id))

    def attachment(self, ident: str) -> bytes:
        """An attachment's bytes by md5, content-id or file name."""
        return self.client._run(ops.attachment(self.inbox, self.id, ident))

    def toggle_star(self) -> Message:
        return self.client._message(self.client._run(ops.toggle_star(self.inbox, self.id)))

    def add_label(self, label: str) -> list[str]:
        return self.client._run(ops.label(self.inbox, self.id, label, True))

    def remove_label(self, label: str) -> list[str]:
        return self.client._run(ops.label(self.inbox, self.id, label, False))

    def move(self, folder: str) -> str:
        """``inbox``, ``all``, ``spam`` or ``trash``."""
        return self.client._run(ops.set_folder(self.inbox, self.id, folder))

    def mark_read(self, read: bool = True) -> bool:
        return self.client._run(ops.set_read(self.inbox, self.id, read))

    def delete(self) -> None:
        self.client._run(ops.delete_message(self.inbox, self.id))
