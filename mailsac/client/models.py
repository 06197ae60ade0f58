"""Typed results of :mod:`mailsac.client`: dataclasses built from the API's JSON.

Every object keeps the JSON it came from in ``json`` (fields the server adds later are
never lost); the typed fields are the ones a test usually reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp of the API (``...Z``) as an aware datetime; None stays None."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime) -> str:
    """The API's timestamp form: UTC, milliseconds, ``Z`` (naive means local time, as
    ``datetime.astimezone`` reads it)."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class EmailAddress:
    """One ``{name, address}`` of a message's ``from``/``to``/``cc``/``bcc``."""

    address: str
    name: str = ""

    @classmethod
    def from_json(cls, data: Any) -> EmailAddress:
        if not isinstance(data, dict):
            return cls(address=str(data or ""))
        return cls(address=str(data.get("address") or ""), name=str(data.get("name") or ""))

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


def _addresses(value: Any) -> list[EmailAddress]:
    return [EmailAddress.from_json(v) for v in value] if isinstance(value, list) else []


@dataclass(repr=False)
class MessageData:
    """Mailsac's message object (``GET /api/addresses/{email}/messages/{id}``).

    ``from_`` is the JSON's ``from``; ``attachment_checksums`` its ``attachments`` (md5
    list); ``link_urls`` its ``links`` (the plain URL list; :class:`Message` offers the
    classified ``links`` of ``/extract``)."""

    id: str
    inbox: str
    subject: str
    from_: list[EmailAddress]
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    received: datetime
    original_inbox: str
    domain: str
    size: int
    attachment_checksums: list[str]
    saved_by: str | None
    ip: str | None
    via: str | None
    folder: str
    labels: list[str]
    read: bool | None
    rtls: bool | None
    link_urls: list[str]
    spam: float | None
    json: dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def fields_from_json(data: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of the dataclass for one message object."""
        received = parse_time(data.get("received")) or datetime.fromtimestamp(0, UTC)
        return {
            "id": str(data["_id"]), "inbox": str(data.get("inbox") or ""),
            "subject": str(data.get("subject") or ""),
            "from_": _addresses(data.get("from")), "to": _addresses(data.get("to")),
            "cc": _addresses(data.get("cc")), "bcc": _addresses(data.get("bcc")),
            "received": received,
            "original_inbox": str(data.get("originalInbox") or data.get("inbox") or ""),
            "domain": str(data.get("domain") or ""), "size": int(data.get("size") or 0),
            "attachment_checksums": list(data.get("attachments") or []),
            "saved_by": data.get("savedBy"), "ip": data.get("ip"), "via": data.get("via"),
            "folder": str(data.get("folder") or "inbox"), "labels": list(data.get("labels") or []),
            "read": data.get("read"), "rtls": data.get("rtls"),
            "link_urls": list(data.get("links") or []), "spam": data.get("spam"),
            "json": data,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageData:
        return MessageData(**MessageData.fields_from_json(data))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(id={self.id!r}, inbox={self.inbox!r}, "
                f"subject={self.subject!r}, from={self.sender!r}, "
                f"received={iso(self.received)!r})")

    @property
    def sender(self) -> str:
        """The first ``From`` address (``""`` when there is none)."""
        return self.from_[0].address if self.from_ else ""

    def summary(self) -> str:
        """One line for failure messages: received, sender, recipients, subject."""
        to = ", ".join(a.address for a in self.to) or self.original_inbox
        return f"{iso(self.received)}  from {self.sender or '?'}  to {to}  {self.subject!r}"


@dataclass(frozen=True)
class Code:
    """A likely one-time code found in a message (``/extract``)."""

    value: str
    context: str = ""
    confidence: float = 0.0
    source: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Code:
        return cls(value=str(data.get("value") or ""), context=str(data.get("context") or ""),
                   confidence=float(data.get("confidence") or 0.0),
                   source=str(data.get("source") or ""))

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Link:
    """A link of a message with its anchor text and kind (confirm, verify, reset, ...)."""

    url: str
    text: str = ""
    source: str = ""
    kind: str = "other"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Link:
        return cls(url=str(data.get("url") or ""), text=str(data.get("text") or ""),
                   source=str(data.get("source") or ""), kind=str(data.get("kind") or "other"))

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Extraction:
    """``GET .../messages/{id}/extract``: codes (best first), links (in order), action link."""

    codes: list[Code]
    links: list[Link]
    action_link: Link | None
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extraction:
        action = data.get("actionLink")
        return cls(codes=[Code.from_json(c) for c in data.get("codes") or []],
                   links=[Link.from_json(link) for link in data.get("links") or []],
                   action_link=Link.from_json(action) if isinstance(action, dict) else None,
                   json=data)


@dataclass(frozen=True)
class Attachment:
    """One entry of ``GET .../attachments``."""

    checksum: str
    file_name: str
    content_type: str
    length: int
    content_id: str | None
    content_disposition: str | None
    transfer_encoding: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        return cls(checksum=str(data.get("checksum") or ""),
                   file_name=str(data.get("fileName") or ""),
                   content_type=str(data.get("contentType") or ""),
                   length=int(data.get("length") or 0), content_id=data.get("contentId"),
                   content_disposition=data.get("contentDisposition"),
                   transfer_encoding=data.get("transferEncoding"))


@dataclass(frozen=True)
class Address:
    """Mailsac's address object (``GET /api/addresses/{email}``)."""

    email: str
    owner: str | None
    forward: str | None
    enablews: bool
    webhook: str | None
    webhook_slack: str | None
    webhook_slack_to_from: bool
    catch_all: str | None
    info: str | None
    encrypted_inbox: str | None
    webhook_secret: str | None
    implicit: bool
    created: datetime | None
    updated: datetime | None
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Address:
        return cls(email=str(data["_id"]), owner=data.get("owner"), forward=data.get("forward"),
                   enablews=bool(data.get("enablews")), webhook=data.get("webhook"),
                   webhook_slack=data.get("webhookSlack"),
                   webhook_slack_to_from=bool(data.get("webhookSlackToFrom")),
                   catch_all=data.get("catchAll"), info=data.get("info"),
                   encrypted_inbox=data.get("encryptedInbox"),
                   webhook_secret=data.get("webhookSecret"),
                   implicit=bool(data.get("implicit")), created=parse_time(data.get("created")),
                   updated=parse_time(data.get("updated")), json=data)


@dataclass(frozen=True)
class DomainInfo:
    """Mailsac's domain object (``GET /api/domains``)."""

    name: str
    owner: str | None
    enablews: bool
    created: datetime | None
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainInfo:
        return cls(name=str(data["_id"]), owner=data.get("owner"),
                   enablews=bool(data.get("enablews")), created=parse_time(data.get("created")),
                   json=data)


@dataclass(frozen=True)
class Account:
    """``GET /api/me`` (every other field of Mailsac's account object is in ``json``)."""

    id: str
    email: str | None
    message_limit: int | None
    private_address_credits: int | None
    capture_private: bool
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(id=str(data.get("_id") or ""), email=data.get("email"),
                   message_limit=data.get("messageLimit"),
                   private_address_credits=data.get("privateAddressCredits"),
                   capture_private=bool(data.get("capturePrivate")), json=data)


@dataclass(frozen=True)
class Stats:
    """``GET /api/me/stats``."""

    addresses: list[str]
    domains: list[str]
    starred_messages: int
    stored_messages: int
    inbox_bytes: int
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(addresses=list(data.get("addresses") or []),
                   domains=list(data.get("domains") or []),
                   starred_messages=int(data.get("starredMessages") or 0),
                   stored_messages=int(data.get("storedMessages") or 0),
                   inbox_bytes=int(data.get("inboxBytes") or 0), json=data)


@dataclass(frozen=True)
class Validation:
    """``GET /api/validations/addresses/{email}``."""

    email: str
    valid_format: bool
    local: str | None
    domain: str | None
    is_disposable: bool
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Validation:
        return cls(email=str(data.get("email") or ""), valid_format=bool(data.get("validFormat")),
                   local=data.get("local"), domain=data.get("domain"),
                   is_disposable=bool(data.get("isDisposable")), json=data)


@dataclass(frozen=True)
class ChaosRule:
    """An SMTP failure-injection rule (``/chaos`` routes)."""

    id: str
    scope: str
    target: str | None
    stage: str
    action: str
    code: int | None
    message: str | None
    delay_seconds: float | None
    probability: float | None
    times_left: int | None
    expires: datetime | None
    created: datetime | None
    fired: int
    json: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChaosRule:
        return cls(id=str(data["_id"]), scope=str(data.get("scope") or ""),
                   target=data.get("target"), stage=str(data.get("stage") or ""),
                   action=str(data.get("action") or ""), code=data.get("code"),
                   message=data.get("message"), delay_seconds=data.get("delaySeconds"),
                   probability=data.get("probability"), times_left=data.get("timesLeft"),
                   expires=parse_time(data.get("expires")),
                   created=parse_time(data.get("created")), fired=int(data.get("fired") or 0),
                   json=data)
