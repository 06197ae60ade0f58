"""The asyncio client: :class:`AsyncClient`, the same surface as :mod:`mailsac.client.sync`
with ``await`` (lazy message fields become coroutine methods: ``await msg.codes()``)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
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


class _AsyncWaits:
    """The asyncio twin of :class:`~mailsac.client.sync._Waits`."""

    def _wait_scope(self) -> tuple[AsyncClient, WaitTarget]:
        raise NotImplementedError

    async def wait(self, *, subject: str | None = None, from_: str | None = None,
                   to: str | None = None, contains: str | None = None,
                   since: datetime | str | None = None, timeout: float = 30.0
                   ) -> AsyncMessage:
        client, target = self._wait_scope()
        found = await client._run(ops.wait(target, Criteria(subject, from_, to, contains),
                                           since=since, timeout=timeout))
        return client._message(found[0])

    async def wait_many(self, count: int, *, subject: str | None = None,
                        from_: str | None = None, to: str | None = None,
                        contains: str | None = None, since: datetime | str | None = None,
                        timeout: float = 30.0) -> list[AsyncMessage]:
        client, target = self._wait_scope()
        return await client._messages(ops.wait(target, Criteria(subject, from_, to, contains),
                                                since=since, timeout=timeout, count=count))

    def expect(self, *, subject: str | None = None, from_: str | None = None,
               to: str | None = None, contains: str | None = None,
               timeout: float = 30.0) -> AsyncPending[AsyncMessage]:
        client, target = self._wait_scope()
        return AsyncPending(lambda since: self.wait(subject=subject, from_=from_, to=to,
                                                    contains=contains, since=since,
                                                    timeout=timeout),
                            lambda: client._run(ops.expect_since(target)))


class AsyncClient(_AsyncWaits):
    """The asyncio twin of :class:`~mailsac.client.Client` (``async with AsyncClient(...)``)."""

    def __init__(self, base_url: str, key: str | None = None, *, timeout: float = 30.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Mailsac-Key": key} if key else {}
        self._http = http or httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                               timeout=timeout)
        if http is not None and key:
            self._http.headers["Mailsac-Key"] = key

    @classmethod
    def from_env(cls, **kw: Any) -> AsyncClient:
        return cls(os.environ.get("MAILSAC_URL", "http://127.0.0.1:8080"),
                   os.environ.get("MAILSAC_KEY"), **kw)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    async def _send(self, call: Call) -> httpx.Response:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout)
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"cannot reach mailsac at {self.base_url} ({call.method} {call.path}): "
                f"{exc!r}") from exc
        return ops.check(call, response)

    async def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._send(call))
        except StopIteration as done:
            return cast(T, done.value)

    def _message(self, data: dict[str, Any]) -> AsyncMessage:
        return AsyncMessage(**MessageData.fields_from_json(data), client=self)

    async def _messages(self, flow: Flow[list[dict[str, Any]]]) -> list[AsyncMessage]:
        return [self._message(m) for m in await self._run(flow)]

    # -- resources ----------------------------------------------------------------------------

    def inbox(self, email: str) -> AsyncInbox:
        return AsyncInbox(self, email)

    def domain(self, name: str) -> AsyncDomain:
        return AsyncDomain(self, name)

    def _wait_scope(self) -> tuple[AsyncClient, WaitTarget]:
        return self, WaitTarget.account()

    @property
    def chaos(self) -> AsyncChaosRules:
        return AsyncChaosRules(self, "/api/admin/chaos")

    async def message(self, email: str, message_id: str) -> AsyncMessage:
        return self._message(await self._run(ops.get_message(email, message_id)))

    # -- account-wide -------------------------------------------------------------------------

    async def account_messages(self, limit: int = 20, skip: int = 0,
                               since: datetime | None = None) -> list[AsyncMessage]:
        return await self._messages(ops.account_messages(limit, skip, since))

    async def filter(self, *, subject: str | None = None, from_: str | None = None,
                     to: str | None = None) -> list[AsyncMessage]:
        return await self._messages(ops.filter_messages(subject, from_, to))

    async def search(self, query: str) -> list[AsyncMessage]:
        return await self._messages(ops.search_messages(query))

    async def starred(self, limit: int = 20, skip: int = 0) -> list[AsyncMessage]:
        return await self._messages(ops.starred_messages(limit, skip))

    async def addresses(self) -> list[Address]:
        return await self._run(ops.list_addresses())

    async def reserve_many(self, emails: list[str]) -> list[Address]:
        return await self._run(ops.reserve_many(emails))

    async def domains(self) -> list[DomainInfo]:
        return await self._run(ops.list_domains())

    async def me(self) -> Account:
        return await self._run(ops.me())

    async def set_capture_private(self, value: bool) -> Account:
        return await self._run(ops.set_capture_private(value))

    async def stats(self) -> Stats:
        return await self._run(ops.stats())

    async def validate(self, email: str) -> Validation:
        return await self._run(ops.validate(email))

    async def validate_many(self, emails: list[str]) -> list[Validation]:
        return await self._run(ops.validate_many(emails))

    async def health(self) -> dict[str, Any]:
        return await self._run(ops.health())

    # -- admin (operator key) -----------------------------------------------------------------

    async def create_account(self, account_id: str, *, email: str | None = None,
                             message_limit: int | None = None,
                             private_address_credits: int | None = None) -> dict[str, Any]:
        return await self._run(ops.create_account(account_id, email, message_limit,
                                                  private_address_credits))

    async def create_key(self, account_id: str, name: str, *, admin: bool = False) -> str:
        return await self._run(ops.create_key(account_id, name, admin))

    async def add_domain(self, domain: str, account_id: str, *, catch_all: bool = False
                         ) -> DomainInfo:
        return await self._run(ops.add_domain(domain, account_id, catch_all))


class AsyncPending(Generic[T]):
    """``async with inbox.expect(...) as pending: ...; msg = await pending.result()``
    (see :class:`~mailsac.client.sync.Pending`)."""

    def __init__(self, run: Callable[[datetime], Awaitable[T]],
                 start: Callable[[], Awaitable[datetime]] | None = None) -> None:
        self._run = run
        self._start = start
        self.since: datetime | None = None
        self._done = False
        self._value: T | None = None

    async def __aenter__(self) -> AsyncPending[T]:
        self.since = await self._start() if self._start else datetime.now(UTC)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None and not self._done:
            await self.result()

    async def result(self) -> T:
        if not self._done:
            if self.since is None:
                raise RuntimeError("use expect() as a context manager: "
                                   "async with ... as pending:")
            self._value = await self._run(self.since)
            self._done = True
        return cast(T, self._value)


class AsyncInbox(_AsyncWaits):
    """The asyncio twin of :class:`~mailsac.client.sync.Inbox`."""

    def __init__(self, client: AsyncClient, email: str) -> None:
        self.client = client
        self.email = email

    def __repr__(self) -> str:
        return f"AsyncInbox({self.email!r})"

    def _wait_scope(self) -> tuple[AsyncClient, WaitTarget]:
        return self.client, WaitTarget.inbox(self.email)

    def __str__(self) -> str:
        return self.email

    async def messages(self, limit: int = 20, until: datetime | None = None
                       ) -> list[AsyncMessage]:
        return await self.client._messages(ops.list_messages(self.email, limit, until))

    async def count(self) -> int:
        return await self.client._run(ops.count_messages(self.email))

    async def get(self, message_id: str) -> AsyncMessage:
        return await self.client.message(self.email, message_id)

    async def delete(self, message_id: str) -> None:
        await self.client._run(ops.delete_message(self.email, message_id))

    async def purge(self) -> None:
        await self.client._run(ops.purge_inbox(self.email))

    async def info(self) -> Address:
        return await self.client._run(ops.get_address(self.email))

    async def reserve(self, **settings: Any) -> Address:
        return await self.client._run(ops.reserve_address(self.email,
                                                          ops.address_settings(**settings)))

    async def update(self, **settings: Any) -> Address:
        return await self.client._run(ops.update_address(self.email,
                                                         ops.address_settings(**settings)))

    async def release(self, *, delete_messages: bool = False) -> Address:
        return await self.client._run(ops.release_address(self.email, delete_messages))

    async def availability(self) -> dict[str, Any]:
        return await self.client._run(ops.availability(self.email))

    async def webhook_deliveries(self) -> list[dict[str, Any]]:
        return await self.client._run(ops.webhook_deliveries(self.email))

    @property
    def chaos(self) -> AsyncChaosRules:
        return AsyncChaosRules(self.client, f"{ops.inbox_path(self.email)}/chaos")


class AsyncDomain(_AsyncWaits):
    """The asyncio twin of :class:`~mailsac.client.sync.Domain`."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"AsyncDomain({self.name!r})"

    def _wait_scope(self) -> tuple[AsyncClient, WaitTarget]:
        return self.client, WaitTarget.domain(self.name)

    async def messages(self, limit: int = 20, until: datetime | None = None
                       ) -> list[AsyncMessage]:
        return await self.client._messages(ops.domain_messages(self.name, limit, until))

    async def purge(self) -> None:
        await self.client._run(ops.purge_domain(self.name))

    @property
    def chaos(self) -> AsyncChaosRules:
        return AsyncChaosRules(self.client, f"{ops.domain_path(self.name)}/chaos")


class AsyncChaosRules:
    """The asyncio twin of :class:`~mailsac.client.sync.ChaosRules`."""

    def __init__(self, client: AsyncClient, base: str) -> None:
        self.client = client
        self.base = base

    async def list(self) -> list[ChaosRule]:
        return await self.client._run(ops.chaos_list(self.base))

    async def add(self, stage: str, action: str = "reply", *, code: int | None = None,
                  message: str | None = None, delay_seconds: float | None = None,
                  probability: float | None = None, times: int | None = None,
                  expires_in_seconds: float | None = None) -> ChaosRule:
        body = ops.chaos_body(stage, action, code=code, message=message,
                              delay_seconds=delay_seconds, probability=probability,
                              times=times, expires_in_seconds=expires_in_seconds)
        return await self.client._run(ops.chaos_add(self.base, body))

    async def remove(self, rule_id: str) -> None:
        await self.client._run(ops.chaos_remove(self.base, rule_id))

    async def clear(self) -> None:
        for rule in await self.list():
            await self.remove(rule.id)


@dataclass(eq=False, repr=False)
class AsyncMessage(MessageData):
    """A message; the lazy parts are coroutine methods, fetched once and cached."""

    client: AsyncClient = field(repr=False, compare=False, kw_only=True)
    _extraction: Extraction | None = field(default=None, init=False, repr=False)
    _text: str | None = field(default=None, init=False, repr=False)
    _html: str | None = field(default=None, init=False, repr=False)

    async def extraction(self) -> Extraction:
        if self._extraction is None:
            self._extraction = await self.client._run(ops.extract(self.inbox, self.id))
        return self._extraction

    async def codes(self) -> list[Code]:
        return (await self.extraction()).codes

    async def code(self) -> str:
        codes = await self.codes()
        if not codes:
            raise LookupError(f"no one-time code found in message {self.id} "
                              f"({self.subject!r} from {self.sender}) of {self.inbox}")
        return codes[0].value

    async def links(self) -> list[Link]:
        return (await self.extraction()).links

    async def action_link(self) -> Link | None:
        return (await self.extraction()).action_link

    async def text(self) -> str:
        if self._text is None:
            self._text = await self.client._run(ops.text_body("text", self.inbox, self.id))
        return self._text

    async def html(self) -> str:
        if self._html is None:
            self._html = await self.client._run(ops.text_body("dirty", self.inbox, self.id))
        return self._html

    async def sanitized_html(self) -> str:
        return await self.client._run(ops.text_body("body", self.inbox, self.id))

    async def raw(self) -> bytes:
        return await self.client._run(ops.raw_message(self.inbox, self.id))

    async def headers(self) -> dict[str, list[str]]:
        return await self.client._run(ops.headers(self.inbox, self.id))

    async def headers_ordered(self) -> list[tuple[str, str]]:
        return await self.client._run(ops.headers_ordered(self.inbox, self.id))

    async def attachments(self) -> list[Attachment]:
        return await self.client._run(ops.attachments(self.inbox, self.id))

    async def attachment(self, ident: str) -> bytes:
        return await self.client._run(ops.attachment(self.inbox, self.id, ident))

    async def toggle_star(self) -> AsyncMessage:
        return self.client._message(await self.client._run(ops.toggle_star(self.inbox,
                                                                           self.id)))

    async def add_label(self, label: str) -> list[str]:
        return await self.client._run(ops.label(self.inbox, self.id, label, True))

    async def remove_label(self, label: str) -> list[str]:
        return await self.client._run(ops.label(self.inbox, self.id, label, False))

    async def move(self, folder: str) -> str:
        return await self.client._run(ops.set_folder(self.inbox, self.id, folder))

    async def mark_read(self, read: bool = True) -> bool:
        return await self.client._run(ops.set_read(self.inbox, self.id, read))

    async def delete(self) -> None:
        await self.client._run(ops.delete_message(self.inbox, self.id))
