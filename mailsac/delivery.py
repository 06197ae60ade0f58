"""The single domain entry point for incoming mail: parse, store the blob, commit metadata.

``deliver()`` returns only after the raw bytes are durable in the blob store (whichever
backend: :class:`~mailsac.storage.BlobStore`) *and* the metadata rows are committed, so the
SMTP layer may answer ``250`` exactly when it returns.

Small messages arrive as bytes. Large ones arrive *spooled* (:mod:`mailsac.spool`): already
in a local file (the blob's temp file, or a remote backend's staging file), which
``deliver()`` commits and which the analysis worker reads by path, so no copy of a large
message is held in this process. Webhook payloads read the bytes back from the blob;
forwarded copies are copied file to file from that local file.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

from mailsac.analysis import Analyzer
from mailsac.directory import Directory, Route
from mailsac.events import MessageStored
from mailsac.forwarding.hub import MessageHub
from mailsac.forwarding.payload import encode_json, encode_message_payload, slack_payload
from mailsac.mime import ParsedMessage
from mailsac.policy import Recipient, parse_recipient
from mailsac.spool import Spool, Spooled
from mailsac.storage import BlobStore, MessageRecord, MetadataWriter, new_blob_key
from mailsac.storage.extracts import ExtractRow
from mailsac.storage.webhooks import NewDelivery
from mailsac.timeutil import now_ms

log = logging.getLogger(__name__)

MAX_FORWARD_HOPS = 3

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 20  # 119 random bits


def new_message_id(index: int = 0) -> str:
    """Mailsac-style id: random alphanumerics plus ``-<recipient index>``."""
    # One 128-bit draw written in base 62 (a call to secrets.choice per character cost
    # more than the rest of building a record).
    n = int.from_bytes(secrets.token_bytes(16))
    chars = []
    for _ in range(_ID_LENGTH):
        n, digit = divmod(n, 62)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars) + f"-{index}"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One SMTP transaction as the SMTP layer hands it over."""

    mail_from: str
    recipients: list[Recipient]
    content: bytes  # the DATA payload, dot-unstuffed, CRLF line endings
    client_ip: str
    client_helo: str
    via: str  # the address of ours the client connected to
    tls: bool = False  # the transaction ran under TLS (STARTTLS or SMTPS): rtls
    spooled: Spooled | None = None  # large mail: the bytes are in this draft, content is b""
    authenticated: bool = False  # the session authenticated with SMTP AUTH
    account: str | None = None  # the account it authenticated as (Email Capture)
    star_for: str | None = None  # capturePrivate: star the copies for this account


def received_header(
    msg: InboundMessage, hostname: str, trace_id: str, when: datetime
) -> bytes:
    """Our RFC 5321 §4.4 trace header, folded, CRLF-terminated (protocol names from
    RFC 3848: ESMTP, ESMTPS under TLS, ESMTPA/ESMTPSA when authenticated)."""
    protocol = "ESMTP" + ("S" if msg.tls else "") + ("A" if msg.authenticated else "")
    helo = "".join(ch for ch in msg.client_helo if 32 < ord(ch) < 127)[:200] or "unknown"
    lines = [
        f"Received: from {helo} ([{msg.client_ip}])",
        f"\tby {hostname} (mailsac) with {protocol} id {trace_id}",
    ]
    if len(msg.recipients) == 1:
        lines.append(f"\tfor <{msg.recipients[0].original}>;")
    else:
        lines[-1] += ";"
    lines.append(f"\t{format_datetime(when)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", errors="replace")


def public_routes(recipients: list[Recipient]) -> list[Route]:
    """Routes for a server with no reserved addresses or owned domains."""
    return [Route(r.inbox, r.original, r.domain, None) for r in recipients]


def merge_routes(routes: list[Route]) -> list[Route]:
    """One route per distinct inbox (``a+1@x`` and ``a+2@x`` land once in ``a@x``), in
    first-seen order, with the notified addresses of duplicates merged."""
    merged: dict[str, Route] = {}
    for route in routes:
        first = merged.get(route.inbox)
        if first is None:
            merged[route.inbox] = route
        else:
            notify = tuple(dict.fromkeys((*first.notify, *route.notify)))
            merged[route.inbox] = replace(first, notify=notify)
    return list(merged.values())


def starred_by(msg: InboundMessage, route: Route) -> str | None:
    """The account a capturePrivate copy is starred for: in a public inbox or one of the
    account's own, never in another account's inbox (that would show the other tenant's
    private mail to the capturing account and keep it from the owner's purge)."""
    star_for = msg.star_for
    if star_for is None or route.account_id not in (None, star_for):
        return None
    return star_for


def build_records(
    msg: InboundMessage, parsed: ParsedMessage, routes: list[Route], blob_key: str, size: int,
    when: datetime, spam: float | None = None,
) -> list[MessageRecord]:
    """One row per route (call :func:`merge_routes` first)."""
    attachments = [a.checksum for a in parsed.attachments] or None
    # One list object per field, shared by every recipient's row: insert_messages encodes
    # each distinct object once, not once per recipient.
    from_addrs = [a.to_json() for a in parsed.from_]
    to_addrs = [a.to_json() for a in parsed.to]
    cc_addrs = [a.to_json() for a in parsed.cc]
    bcc_addrs = [a.to_json() for a in parsed.bcc]
    links = list(parsed.links)
    records: list[MessageRecord] = []
    for route in routes:
        records.append(
            MessageRecord(
                id=new_message_id(len(records)),
                inbox=route.inbox,
                original_inbox=route.original,
                domain=route.domain,
                received=when,
                size=size,
                blob_key=blob_key,
                subject=parsed.subject,
                from_addrs=from_addrs,
                to_addrs=to_addrs,
                cc_addrs=cc_addrs,
                bcc_addrs=bcc_addrs,
                attachments=attachments,
                links=links,
                ip=msg.client_ip,
                via=msg.via,
                mail_from=msg.mail_from,
                message_id=parsed.message_id,
                folder="inbox",
                labels=[],
                read=False,
                rtls=msg.tls,
                saved_by=starred_by(msg, route),
                spam=spam,
                account_id=route.account_id,
            )
        )
    return records


def extract_rows(records: list[MessageRecord], extract: str | None) -> list[ExtractRow]:
    """The stored codes and links (:mod:`mailsac.extract`), one row per recipient's copy."""
    return [] if extract is None else [(record.id, extract) for record in records]


class Delivery:
    """Stores incoming mail durably; see the module docstring for the guarantee.

    After the commit it publishes :class:`MessageStored` to the hub (WebSockets, waiters)
    and stores a forwarded copy for reserved addresses with ``forward`` set. Webhook and
    Slack deliveries are written in the *same* transaction as the message, so a crash can
    never lose a notification for a stored message.
    """

    def __init__(
        self, blobs: BlobStore, writer: MetadataWriter, hostname: str, directory: Directory,
        hub: MessageHub | None = None, web_url: str = "", analyzer: Analyzer | None = None,
    ) -> None:
        self._blobs = blobs
        self._writer = writer
        self._hostname = hostname
        self._directory = directory
        self._hub = hub
        self._web_url = web_url.rstrip("/")
        self._analyzer = analyzer or Analyzer(None, workers=0)
        self._listeners: list[Callable[[list[MessageRecord]], None]] = []
        #: Called after a commit that created webhook deliveries (wakes the dispatcher).
        self.on_new_deliveries: Callable[[], None] | None = None

    def add_listener(self, listener: Callable[[list[MessageRecord]], None]) -> None:
        """Call ``listener(records)`` after each delivery commits (must not block)."""
        self._listeners.append(listener)

    async def _analyse(self, raw: bytes | Path, routes: list[Route], size: int | None = None,
                       ) -> tuple[ParsedMessage, float | None, str | None]:
        """Parsing, scoring and code/link extraction are CPU work: done in worker
        processes, off the event loop. Bodies and headers come back only when a webhook
        payload needs them. ``raw`` is the message or the path of its (committed) blob."""
        full = self._needs_webhook(routes)
        parsed, spam, extract = await self._analyzer.run_extracting(raw, full=full, size=size)
        if not full and self._needs_webhook(routes):  # a webhook was set up meanwhile
            parsed, spam, extract = await self._analyzer.run_extracting(raw, True, size)
        return parsed, spam, extract

    def spool(self, msg: InboundMessage) -> Spool:
        """A spool for the DATA of ``msg`` (its content not here yet): if it spills, the
        blob's temp file starts with our Received header, dated when spilling began."""

        async def start() -> Spooled:
            key, when = new_blob_key(), now_ms()
            header = received_header(msg, self._hostname, key[:16], when)
            draft = await self._blobs.open_draft(key, header)
            return Spooled(draft, when, len(header))

        return Spool(start)

    def _needs_webhook(self, routes: list[Route]) -> bool:
        addresses = self._directory.addresses
        for route in routes:
            for address in route.notify:
                settings = addresses.get(address)
                if settings is not None and settings.webhook:
                    return True
        return False

    async def _deliveries(self, records: list[MessageRecord], routes: list[Route],
                          parsed: ParsedMessage, raw: bytes) -> list[NewDelivery]:
        """The webhook/Slack deliveries the recipients' address settings ask for."""
        found: list[NewDelivery] = []
        for record, route in zip(records, routes, strict=True):
            payload: str | None = None
            for address in route.notify:
                settings = self._directory.addresses.get(address)
                if settings is None:
                    continue
                if settings.webhook:
                    if payload is None:  # grows with the message: built off the loop
                        payload = await asyncio.to_thread(
                            encode_message_payload, record, parsed, raw)
                    found.append(NewDelivery(record.id, address, "webhook", settings.webhook,
                                             payload, settings.account_id))
                if settings.webhook_slack:
                    link = f"{self._web_url}/inbox/{quote(record.inbox)}/{record.id}"
                    slack = slack_payload(record, link, settings.webhook_slack_to_from)
                    found.append(NewDelivery(record.id, address, "slack",
                                             settings.webhook_slack, encode_json(slack),
                                             settings.account_id))
        return found

    async def deliver(self, msg: InboundMessage, hops: int = 0) -> list[MessageRecord]:
        if msg.spooled is not None:
            return await self._deliver_spooled(msg, msg.spooled, hops)
        if not msg.recipients:
            raise ValueError("deliver() needs at least one recipient")
        when = now_ms()
        blob_key = new_blob_key()
        raw = received_header(msg, self._hostname, blob_key[:16], when) + msg.content
        routes = merge_routes(await self._directory.routes(msg.recipients))
        # The blob is written and fsynced (in a thread) while the message is analysed (in
        # a worker process): the two waits overlap instead of adding up. A blob whose
        # analysis fails is an orphan, which the sweeper removes.
        blob_written = asyncio.ensure_future(self._blobs.write(blob_key, raw))
        try:
            parsed, spam, extract = await self._analyse(raw, routes)
        finally:
            await blob_written  # never leave the write running unobserved
        records = build_records(msg, parsed, routes, blob_key, len(raw), when, spam)
        deliveries = await self._deliveries(records, routes, parsed, raw)
        await self._writer.insert(records, deliveries, extract_rows(records, extract))
        self._after_commit(records, routes, bool(deliveries))
        await self._forward(msg, records, routes, hops)
        return records

    async def _deliver_spooled(self, msg: InboundMessage, spooled: Spooled,
                               hops: int) -> list[MessageRecord]:
        """:meth:`deliver` for a message already in a blob draft (see the module doc)."""
        spooled.taken = True
        draft = spooled.draft
        try:
            if not msg.recipients:
                raise ValueError("deliver() needs at least one recipient")
            routes = merge_routes(await self._directory.routes(msg.recipients))
            await draft.commit()  # fsync + rename, or upload: the blob is durable
        finally:
            await draft.discard()  # a no-op once committed
        # From here on a failure leaves an orphan blob, which the sweeper removes.
        try:
            parsed, spam, extract = await self._analyse(draft.path, routes, draft.size)
            raw = b""
            if self._needs_webhook(routes):  # only webhook payloads need the bytes again
                raw = await self._blobs.read(draft.key)
            records = build_records(msg, parsed, routes, draft.key, draft.size,
                                    spooled.when, spam)
            deliveries = await self._deliveries(records, routes, parsed, raw)
            await self._writer.insert(records, deliveries, extract_rows(records, extract))
            self._after_commit(records, routes, bool(deliveries))
            await self._forward(msg, records, routes, hops)
        finally:
            await draft.release()  # a remote backend's staging file is no longer needed
        return records

    def _after_commit(self, records: list[MessageRecord], routes: list[Route],
                      has_deliveries: bool) -> None:
        for listener in self._listeners:
            try:
                listener(records)
            except Exception:  # a listener bug must never turn a stored message into an error
                log.exception("delivery listener failed")
        if self._hub is not None:
            for record, route in zip(records, routes, strict=True):
                addresses = tuple(dict.fromkeys((record.inbox, *route.notify)))
                self._hub.publish(MessageStored(record, addresses))
        if has_deliveries and self.on_new_deliveries is not None:
            self.on_new_deliveries()

    async def _forward(self, msg: InboundMessage, records: list[MessageRecord],
                       routes: list[Route], hops: int) -> None:
        """Store a copy for every reserved address with ``forward`` set (at most 3 hops)."""
        if hops >= MAX_FORWARD_HOPS:
            return
        for record, route in zip(records, routes, strict=True):
            for address in route.notify:
                settings = self._directory.addresses.get(address)
                if settings is None or not settings.forward or settings.forward == record.inbox:
                    continue
                prefix = f"X-Mailsac-Forwarded-From: {record.inbox}\r\n".encode()
                copy = InboundMessage(
                    mail_from=msg.mail_from, recipients=[parse_recipient(settings.forward)],
                    content=b"" if msg.spooled is not None else prefix + msg.content,
                    client_ip=msg.client_ip, client_helo=msg.client_helo,
                    via=f"forwarded via {record.inbox}", tls=msg.tls)
                try:
                    if msg.spooled is not None:  # copy file to file, never into memory
                        copy = await self._spooled_copy(copy, prefix, msg.spooled.draft.path,
                                                        msg.spooled.header_len)
                    await self.deliver(copy, hops + 1)
                except Exception:
                    log.exception("could not store the forwarded copy for %s", settings.forward)

    async def _spooled_copy(self, copy: InboundMessage, prefix: bytes, source: Path,
                            skip: int) -> InboundMessage:
        """``copy`` spooled: its Received header, ``prefix``, then the content of the
        source's local file (without its own Received header, the first ``skip`` bytes)."""
        key, when = new_blob_key(), now_ms()
        header = received_header(copy, self._hostname, key[:16], when)
        draft = await self._blobs.open_draft(key, header + prefix)
        try:
            await draft.copy_from(source, skip)
        except BaseException:
            await draft.discard()
            raise
        return replace(copy, spooled=Spooled(draft, when, len(header)))
