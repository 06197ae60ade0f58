"""The client's one implementation of the API, free of I/O ("sans-IO").

Every operation is a generator ("flow") that yields :class:`Call` objects and receives
the ``httpx.Response`` for each; its return value is the parsed result. The sync
:class:`~mailsac.client.Client` and the async :class:`~mailsac.client.AsyncClient` only
drive flows (``_run``), so request building, response parsing, the wait loop and the
timeout diagnostics exist once. Flows that return messages return their JSON objects;
the two clients wrap them in their own ``Message`` class (sync or async lazy fields).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from mailsac.client.errors import WaitTimeout, error_from_response
from mailsac.client.models import (
    Account,
    Address,
    Attachment,
    ChaosRule,
    DomainInfo,
    Extraction,
    MessageData,
    Stats,
    Validation,
    iso,
)

T = TypeVar("T")
Json = dict[str, Any]

#: The server holds one wait request at most this long; longer waits are several requests.
MAX_SERVER_WAIT = 300.0
#: Extra seconds the HTTP read timeout allows beyond a wait's own timeout.
WAIT_SLACK = 30.0
#: ``since`` when none is given: mail already in the inbox counts.
EPOCH = "1970-01-01T00:00:00.000Z"
#: How many of the newest messages a timeout message lists.
SHOWN_ON_TIMEOUT = 10


@dataclass(frozen=True)
class Call:
    """One HTTP request of a flow. ``ok``: statuses handed back to the flow (others raise
    :class:`~mailsac.client.MailsacError`); ``None`` hands back every status."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    ok: tuple[int, ...] | None = (200,)
    timeout: float | None = None


Flow = Generator[Call, httpx.Response, T]


def check(call: Call, response: httpx.Response) -> httpx.Response:
    """Raise the API's error unless ``response`` has a status ``call`` accepts."""
    if call.ok is not None and response.status_code not in call.ok:
        raise error_from_response(response)
    return response


def q(part: str) -> str:
    """One path segment, percent-encoded (``@`` kept for readable URLs)."""
    return quote(part, safe="@")


def inbox_path(email: str) -> str:
    return f"/api/addresses/{q(email)}"


def message_path(email: str, message_id: str) -> str:
    return f"{inbox_path(email)}/messages/{q(message_id)}"


def domain_path(domain: str) -> str:
    return f"/api/domains/{q(domain)}"


def since_text(since: datetime | str | None) -> str:
    if since is None:
        return EPOCH
    return since if isinstance(since, str) else iso(since)


# -- generic flows ----------------------------------------------------------------------------


def fetch(call: Call, parse: Callable[[httpx.Response], T]) -> Flow[T]:
    """A one-request flow."""
    response = yield call
    return parse(response)


def get_json(path: str, params: dict[str, str] | None = None) -> Flow[Any]:
    return fetch(Call("GET", path, params), lambda r: r.json())


def json_list(path: str, params: dict[str, str] | None = None, key: str | None = None
              ) -> Flow[list[Json]]:
    """A list of objects, bare or wrapped as ``{key: [...]}``."""
    def parse(response: httpx.Response) -> list[Json]:
        body = response.json()
        items = body.get(key) if key and isinstance(body, dict) else body
        return list(items or [])
    return fetch(Call("GET", path, params), parse)


def no_content(method: str, path: str, params: dict[str, str] | None = None) -> Flow[None]:
    return fetch(Call(method, path, params, ok=(200, 204)), lambda r: None)


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[name] = iso(value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


# -- messages ---------------------------------------------------------------------------------


def list_messages(email: str, limit: int = 20, until: datetime | None = None
                  ) -> Flow[list[Json]]:
    return json_list(f"{inbox_path(email)}/messages", _params(limit=limit, until=until))


def count_messages(email: str) -> Flow[int]:
    return fetch(Call("GET", f"{inbox_path(email)}/message-count"),
                 lambda r: int(r.json()["count"]))


def get_message(email: str, message_id: str) -> Flow[Json]:
    return get_json(message_path(email, message_id))


def delete_message(email: str, message_id: str) -> Flow[None]:
    return no_content("DELETE", message_path(email, message_id))


def purge_inbox(email: str) -> Flow[None]:
    return no_content("DELETE", f"{inbox_path(email)}/messages")


def text_body(kind: str, email: str, message_id: str) -> Flow[str]:
    """``kind``: ``text`` (plain text), ``dirty`` (HTML as sent), ``body`` (sanitized)."""
    return fetch(Call("GET", f"/api/{kind}/{q(email)}/{q(message_id)}"), lambda r: r.text)


def raw_message(email: str, message_id: str) -> Flow[bytes]:
    return fetch(Call("GET", f"/api/raw/{q(email)}/{q(message_id)}"), lambda r: r.content)


def headers(email: str, message_id: str) -> Flow[dict[str, list[str]]]:
    def parse(response: httpx.Response) -> dict[str, list[str]]:
        return {k: v if isinstance(v, list) else [v] for k, v in response.json().items()}
    return fetch(Call("GET", f"{message_path(email, message_id)}/headers",
                      {"format": "json"}), parse)


def headers_ordered(email: str, message_id: str) -> Flow[list[tuple[str, str]]]:
    return fetch(Call("GET", f"{message_path(email, message_id)}/headers",
                      {"format": "json-ordered"}),
                 lambda r: [(h["name"], h["value"]) for h in r.json()])


def attachments(email: str, message_id: str) -> Flow[list[Attachment]]:
    return fetch(Call("GET", f"{message_path(email, message_id)}/attachments"),
                 lambda r: [Attachment.from_json(a) for a in r.json()])


def attachment(email: str, message_id: str, ident: str) -> Flow[bytes]:
    """The attachment's bytes; ``ident``: its md5, content-id or file name."""
    return fetch(Call("GET", f"{message_path(email, message_id)}/attachments/{q(ident)}"),
                 lambda r: r.content)


def extract(email: str, message_id: str) -> Flow[Extraction]:
    return fetch(Call("GET", f"{message_path(email, message_id)}/extract"),
                 lambda r: Extraction.from_json(r.json()))


def toggle_star(email: str, message_id: str) -> Flow[Json]:
    return fetch(Call("PUT", f"{message_path(email, message_id)}/star"), lambda r: r.json())


def label(email: str, message_id: str, name: str, present: bool) -> Flow[list[str]]:
    call = Call("PUT" if present else "DELETE",
                f"{message_path(email, message_id)}/labels/{quote(name, safe='')}")
    return fetch(call, lambda r: list(r.json().get("labels") or []))


def set_folder(email: str, message_id: str, folder: str) -> Flow[str]:
    call = Call("PUT", f"{message_path(email, message_id)}/folder/{q(folder)}")
    return fetch(call, lambda r: str(r.json()["folder"]))


def set_read(email: str, message_id: str, read: bool) -> Flow[bool]:
    call = Call("PUT", f"{message_path(email, message_id)}/read/{'true' if read else 'false'}")
    return fetch(call, lambda r: bool(r.json()["read"]))


# -- addresses, domains, account --------------------------------------------------------------


def address_settings(forward: str | None = None, enablews: bool | None = None,
                     webhook: str | None = None, webhook_slack: str | None = None,
                     webhook_slack_to_from: bool | None = None, info: str | None = None
                     ) -> Json:
    """The body of reserve/update: only the settings given (``""`` clears one)."""
    body = {"forward": forward, "enablews": enablews, "webhook": webhook,
            "webhookSlack": webhook_slack, "webhookSlackToFrom": webhook_slack_to_from,
            "info": info}
    return {k: v for k, v in body.items() if v is not None}


def _address(call: Call) -> Flow[Address]:
    return fetch(call, lambda r: Address.from_json(r.json()))


def get_address(email: str) -> Flow[Address]:
    return _address(Call("GET", inbox_path(email)))


def reserve_address(email: str, settings: Json) -> Flow[Address]:
    return _address(Call("POST", inbox_path(email), json=settings))


def update_address(email: str, settings: Json) -> Flow[Address]:
    return _address(Call("PUT", inbox_path(email), json=settings))


def release_address(email: str, delete_messages: bool = False) -> Flow[Address]:
    params = {"deleteAddressMessages": "true"} if delete_messages else None
    return _address(Call("DELETE", inbox_path(email), params))


def availability(email: str) -> Flow[Json]:
    return get_json(f"{inbox_path(email)}/availability")


def webhook_deliveries(email: str) -> Flow[list[Json]]:
    return json_list(f"{inbox_path(email)}/webhook-deliveries")


def list_addresses() -> Flow[list[Address]]:
    return fetch(Call("GET", "/api/addresses"),
                 lambda r: [Address.from_json(a) for a in r.json()])


def reserve_many(emails: list[str]) -> Flow[list[Address]]:
    return fetch(Call("POST", "/api/private-addresses-bulk", json={"addresses": emails}),
                 lambda r: [Address.from_json(a) for a in r.json()])


def list_domains() -> Flow[list[DomainInfo]]:
    return fetch(Call("GET", "/api/domains"),
                 lambda r: [DomainInfo.from_json(d) for d in r.json()])


def domain_messages(domain: str, limit: int = 20, until: datetime | None = None
                    ) -> Flow[list[Json]]:
    return json_list(f"{domain_path(domain)}/messages", _params(limit=limit, until=until))


def purge_domain(domain: str) -> Flow[None]:
    return no_content("POST", f"{domain_path(domain)}/delete-all-domain-mail")


def me() -> Flow[Account]:
    return fetch(Call("GET", "/api/me"), lambda r: Account.from_json(r.json()))


def set_capture_private(value: bool) -> Flow[Account]:
    return fetch(Call("PUT", "/api/me", json={"capturePrivate": value}),
                 lambda r: Account.from_json(r.json()))


def stats() -> Flow[Stats]:
    return fetch(Call("GET", "/api/me/stats"), lambda r: Stats.from_json(r.json()))


def account_messages(limit: int = 20, skip: int = 0, since: datetime | None = None
                     ) -> Flow[list[Json]]:
    return json_list("/api/inbox", _params(limit=limit, skip=skip, since=since), "messages")


def filter_messages(subject: str | None, from_: str | None, to: str | None
                    ) -> Flow[list[Json]]:
    params = _params(andSubjectIncludes=subject, andFrom=from_, andTo=to)
    return json_list("/api/inbox-filter", params, "messages")


def search_messages(query: str) -> Flow[list[Json]]:
    return json_list("/api/inbox-search", {"query": query}, "messages")


def starred_messages(limit: int = 20, skip: int = 0) -> Flow[list[Json]]:
    return json_list("/api/addresses/starred/messages", _params(limit=limit, skip=skip))


def validate(email: str) -> Flow[Validation]:
    return fetch(Call("GET", f"/api/validations/addresses/{q(email)}"),
                 lambda r: Validation.from_json(r.json()))


def validate_many(emails: list[str]) -> Flow[list[Validation]]:
    return fetch(Call("POST", "/api/validations/addresses", json={"emails": emails}),
                 lambda r: [Validation.from_json(v) for v in r.json()])


def health() -> Flow[Json]:
    return fetch(Call("GET", "/healthz", ok=(200, 503)), lambda r: r.json())


# -- admin (operator key) ---------------------------------------------------------------------


def create_account(account_id: str, email: str | None = None, message_limit: int | None = None,
                   private_address_credits: int | None = None) -> Flow[Json]:
    body = {"id": account_id, "email": email, "messageLimit": message_limit,
            "privateAddressCredits": private_address_credits}
    return fetch(Call("POST", "/api/admin/accounts",
                      json={k: v for k, v in body.items() if v is not None}), lambda r: r.json())


def create_key(account_id: str, name: str, admin: bool = False) -> Flow[str]:
    return fetch(Call("POST", f"/api/admin/accounts/{q(account_id)}/keys",
                      json={"name": name, "admin": admin}), lambda r: str(r.json()["key"]))


def add_domain(domain: str, account_id: str, catch_all: bool = False) -> Flow[DomainInfo]:
    return fetch(Call("POST", "/api/admin/domains",
                      json={"domain": domain, "account": account_id, "catchAll": catch_all}),
                 lambda r: DomainInfo.from_json(r.json()))


# -- chaos rules ------------------------------------------------------------------------------


def chaos_body(stage: str, action: str = "reply", *, code: int | None = None,
               message: str | None = None, delay_seconds: float | None = None,
               probability: float | None = None, times: int | None = None,
               expires_in_seconds: float | None = None) -> Json:
    body = {"stage": stage, "action": action, "code": code, "message": message,
            "delaySeconds": delay_seconds, "probability": probability, "times": times,
            "expiresInSeconds": expires_in_seconds}
    return {k: v for k, v in body.items() if v is not None}


def chaos_list(base: str) -> Flow[list[ChaosRule]]:
    return fetch(Call("GET", base), lambda r: [ChaosRule.from_json(c) for c in r.json()])


def chaos_add(base: str, body: Json) -> Flow[ChaosRule]:
    return fetch(Call("POST", base, json=body, ok=(200, 201)),
                 lambda r: ChaosRule.from_json(r.json()))


def chaos_remove(base: str, rule_id: str) -> Flow[None]:
    return no_content("DELETE", f"{base}/{q(rule_id)}")


# -- waits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    """What a wait matches: case-insensitive substrings (``contains``: subject or body)."""

    subject: str | None = None
    from_: str | None = None
    to: str | None = None
    contains: str | None = None

    def params(self) -> dict[str, str]:
        return _params(subject=self.subject, **{"from": self.from_}, to=self.to,
                       contains=self.contains)

    def describe(self) -> str:
        parts = [f"{name} contains {value!r}" for name, value in
                 (("subject", self.subject), ("from", self.from_), ("to", self.to),
                  ("subject or body", self.contains)) if value]
        return " and ".join(parts) or "any message"

    def mismatches(self, msg: MessageData, since: str) -> list[str]:
        """Why ``msg`` does not match (as far as its metadata tells; body not checked)."""
        why = []
        if since != EPOCH and iso(msg.received) < since:
            why.append("received before since")
        if self.subject and self.subject.casefold() not in msg.subject.casefold():
            why.append(f"subject lacks {self.subject!r}")
        senders = " ".join(f"{a.name} {a.address}" for a in msg.from_).casefold()
        if self.from_ and self.from_.casefold() not in senders:
            why.append(f"from lacks {self.from_!r}")
        rcpts = " ".join(f"{a.name} {a.address}" for a in msg.to).casefold()
        if self.to and self.to.casefold() not in rcpts + " " + msg.inbox:
            why.append(f"to lacks {self.to!r}")
        return why


@dataclass(frozen=True)
class WaitTarget:
    """Where a wait looks: an inbox, a custom domain or the whole account."""

    label: str  # "inbox x@example.test"
    wait_path: str
    listing: Call  # the newest messages there, for the timeout message
    listing_key: str | None = None  # the listing's body is {listing_key: [...]}

    @classmethod
    def inbox(cls, email: str) -> WaitTarget:
        return cls(f"inbox {email}", f"{inbox_path(email)}/messages/wait",
                   Call("GET", f"{inbox_path(email)}/messages",
                        {"limit": str(SHOWN_ON_TIMEOUT)}, ok=None))

    @classmethod
    def domain(cls, domain: str) -> WaitTarget:
        return cls(f"domain {domain}", f"{domain_path(domain)}/messages/wait",
                   Call("GET", f"{domain_path(domain)}/messages",
                        {"limit": str(SHOWN_ON_TIMEOUT)}, ok=None))

    @classmethod
    def account(cls) -> WaitTarget:
        return cls("the account's addresses and domains", "/api/messages/wait",
                   Call("GET", "/api/inbox", {"limit": str(SHOWN_ON_TIMEOUT)}, ok=None),
                   "messages")


_NEVER = "9999-01-01T00:00:00.000Z"  # a ``since`` no message can be received after


def expect_since(target: WaitTarget) -> Flow[datetime]:
    """Where :meth:`expect` starts: the *server's* clock now, plus one millisecond.

    A wait that cannot match answers 204 at once, saying when it ended by the server's
    clock (``X-Mailsac-Waited-Until``, millisecond precision). That, not this machine's
    clock, is what ``received`` is compared with, so a skewed clock between the test
    runner and the service cannot hide new mail or let old mail match. The millisecond
    excludes mail stored in the very millisecond of the answer: it came before it. Mail an
    action causes cannot: the action starts only once the answer has been received.
    Against a server without waits (no header), this machine's clock is used."""
    response = yield Call("GET", target.wait_path, {"since": _NEVER, "timeout": "0"},
                          ok=None)
    header = response.headers.get("X-Mailsac-Waited-Until")
    try:
        server_now = datetime.fromisoformat(header) if header else None
    except ValueError:
        server_now = None
    if server_now is None or server_now.tzinfo is None:
        return datetime.now(UTC)
    return server_now + timedelta(milliseconds=1)


def wait(target: WaitTarget, criteria: Criteria, *, since: datetime | str | None,
         timeout: float, count: int | None = None) -> Flow[list[Json]]:
    """Long-poll until ``count`` (default one) matching messages are there; raise
    :class:`WaitTimeout` listing what did arrive when ``timeout`` seconds pass first.

    ``since`` (default: the beginning of time, so mail already there counts) is sent
    unchanged on every request, so splitting a long wait into several is race-free."""
    start = since_text(since)
    deadline = time.monotonic() + timeout
    matched = 0
    while True:
        chunk = max(0.0, min(MAX_SERVER_WAIT, deadline - time.monotonic()))
        params = {**criteria.params(), "since": start, "timeout": f"{chunk:.3f}"}
        if count is not None:
            params["count"] = str(count)
        response = yield Call("GET", target.wait_path, params, ok=(200, 204),
                              timeout=chunk + WAIT_SLACK)
        if response.status_code == 200:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("messages"), list):
                return list(body["messages"])
            return [body]
        matched = int(response.headers.get("X-Mailsac-Matched") or 0)
        if deadline - time.monotonic() <= 0:
            break
    listing = yield target.listing
    raise _timeout_error(target, criteria, start, timeout, count, matched, listing)


def _timeout_error(target: WaitTarget, criteria: Criteria, since: str, timeout: float,
                   count: int | None, matched: int, listing: httpx.Response) -> WaitTimeout:
    wanted = criteria.describe()
    if count is None:
        head = f"no message matching {wanted} arrived in {target.label}"
    else:
        head = f"only {matched} of {count} messages matching {wanted} arrived in {target.label}"
    since_note = "" if since == EPOCH else f" since {since}"
    lines = [f"{head} within {timeout:g} s{since_note}."]
    arrived: list[MessageData] = []
    if listing.status_code == 200:
        body = listing.json()
        items = body.get(target.listing_key) if target.listing_key else body
        arrived = [MessageData.from_json(m) for m in items or []]
        if not arrived:
            lines.append(f"Nothing at all arrived there ({target.label} is empty).")
        else:
            lines.append(f"What is there (newest first, at most {SHOWN_ON_TIMEOUT}):")
            for msg in arrived:
                why = criteria.mismatches(msg, since)
                if not why and criteria.contains:
                    why = [f"may lack {criteria.contains!r} in its body"]
                lines.append(f"  - {msg.summary()}" + (f"  <- {'; '.join(why)}" if why else ""))
    else:
        lines.append(f"(could not list {target.label}: HTTP {listing.status_code})")
    return WaitTimeout("\n".join(lines), arrived=arrived, matched=matched,
                       criteria={**criteria.params(), "since": since})
