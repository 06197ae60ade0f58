"""aiosmtpd hooks: translate SMTP commands into policy checks and one ``deliver()`` call.

The handler never touches SQL or blobs; every reply comes from :mod:`mailsac.smtp.replies`.

A session authenticated with an account's credentials (:mod:`mailsac.smtp.auth`) is an
Email Capture session: any recipient domain is accepted, its messages are counted against
the account's ``account`` limit instead of the anonymous per-client limits, and with the
account's ``capturePrivate`` the copies are starred for it (:mod:`mailsac.capture`). On a
port started with ``require_auth`` (the capture port) MAIL needs such a session first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from mailsac.capture import Capture, CaptureTransaction
from mailsac.chaos import Chaos
from mailsac.delivery import Delivery, InboundMessage
from mailsac.errors import DomainNotAccepted, InvalidAddress, MailsacError
from mailsac.gate import Recipient as GateRecipient
from mailsac.gate import SenderGate
from mailsac.policy import Recipient, domain_accepted, parse_recipient
from mailsac.smtp import faults, replies
from mailsac.smtp.auth import SmtpAuth, session_account
from mailsac.spool import Spool, Spooled

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8 asks servers to accept at least 100


def _peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else ""


@dataclass
class SmtpMetrics:
    """Plain counters the /metrics endpoint reads (labels are reason names only)."""

    accepted: int = 0
    bytes_received: int = 0
    rejections: dict[str, int] = field(default_factory=dict)

    def rejected(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1


class MailsacEnvelope(Envelope):
    """aiosmtpd's envelope plus the validated recipients and, for DATA, what the
    streaming reader collected (``spooled`` for large mail, else ``original_content``)."""

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[Recipient] = []
        self.spooled: Spooled | None = None
        self.header_block = b""
        self.capture: CaptureTransaction | None = None  # set by MAIL in a capture session


class MailsacHandler:
    """The hook object passed to :class:`mailsac.smtp.server.MailsacSMTP`."""

    def __init__(
        self, delivery: Delivery, accepted_domains: Collection[str],
        gate: SenderGate | None = None,
        owner_of: Callable[[str], str | None] = lambda _: None,
        metrics: SmtpMetrics | None = None, auth: SmtpAuth | None = None,
        capture: Capture | None = None, chaos: Chaos | None = None,
    ) -> None:
        self._delivery = delivery
        self._accepted = frozenset(accepted_domains)
        self._gate = gate
        self._owner_of = owner_of  # the account holding a (private) inbox, None if public
        self.metrics = metrics or SmtpMetrics()
        self.auth = auth
        self._capture = capture
        self.chaos = chaos  # failure injection (mailsac.smtp.faults) while a rule is live

    @staticmethod
    def _close_after_reply(server: SMTP, reply: str) -> str:
        """421 means "closing the channel" (RFC 5321 §3.8): close once it is sent."""
        if reply.startswith("421") and server.transport is not None:
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must record it itself
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if self.auth is None or not self.auth.offered(session):  # e.g. before STARTTLS
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses[:-1] + extra + responses[-1:]

    # aiosmtpd looks up ``auth_<MECHANISM>`` on the handler (they replace its own).
    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if self.auth is None:
            await server.push("502 5.5.1 AUTH is not available on this server")
            return AuthResult(success=False, handled=True)
        return await self.auth.plain(server, args)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if self.auth is None:
            await server.push("502 5.5.1 AUTH is not available on this server")
            return AuthResult(success=False, handled=True)
        return await self.auth.login(server, args)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        assert isinstance(envelope, MailsacEnvelope)
        account = session_account(session)
        if account is None and getattr(server, "require_auth", False):
            return str(replies.S530_AUTH_REQUIRED)
        if address != "<>":  # the null reverse-path (bounces) is always allowed
            try:
                parse_recipient(address)
            except InvalidAddress as exc:
                return str(replies.reply_for(exc, sender=True))
        if self._gate is not None:
            try:
                self._gate.on_mail_from(_peer_ip(session), "" if address == "<>" else address)
            except MailsacError as exc:
                self.metrics.rejected(type(exc).__name__)
                return self._close_after_reply(server, str(replies.reply_for(exc)))
        if self.chaos is not None and self.chaos.active:
            injected = await faults.at_mail(self.chaos, server, session, address)
            if injected is not None:
                return self._close_after_reply(server, injected)
        if account is not None and self._capture is not None:
            try:
                envelope.capture = await self._capture.begin(account)
            except MailsacError as exc:  # storage unavailable: 451, try again later
                return str(replies.reply_for(exc))
        envelope.mail_from = address  # "<>" stays truthy so RCPT sees a MAIL command
        envelope.mail_options.extend(mail_options)
        return str(replies.S250_SENDER_OK)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        assert isinstance(envelope, MailsacEnvelope)
        if len(envelope.recipients) >= MAX_RECIPIENTS:
            return str(replies.S452_TOO_MANY_RECIPIENTS)
        capture = envelope.capture
        try:
            recipient = parse_recipient(address)
            # Email Capture accepts every domain: the account vouches for its mail.
            if capture is None and not domain_accepted(recipient.domain, self._accepted):
                raise DomainNotAccepted(recipient.domain)
        except MailsacError as exc:
            return str(replies.reply_for(exc))
        if self.chaos is not None and self.chaos.active:
            injected = await faults.at_rcpt(self.chaos, server, session, envelope, recipient)
            if injected is not None:
                return self._close_after_reply(server, injected)
        if capture is not None and not capture.take():
            return str(replies.S452_STARRED_QUOTA.with_text(
                f"Starred message limit reached: account {capture.account_id} has "
                f"capturePrivate on and may keep at most {capture.limit} starred messages; "
                f"unstar or delete some, or turn capturePrivate off"))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.recipients.append(recipient)
        return str(replies.S250_RECIPIENT_OK)

    @staticmethod
    def _message(server: SMTP, session: Session, envelope: MailsacEnvelope,
                 content: bytes = b"", spooled: Spooled | None = None) -> InboundMessage:
        peer: Any = session.peer
        sockname: Any = server.transport.get_extra_info("sockname") if server.transport else None
        capture = envelope.capture
        return InboundMessage(
            mail_from="" if envelope.mail_from == "<>" else (envelope.mail_from or ""),
            recipients=list(envelope.recipients),
            content=content,
            client_ip=str(peer[0]) if isinstance(peer, tuple) else "",
            client_helo=session.host_name or "",
            via=str(sockname[0]) if isinstance(sockname, tuple) else "",
            tls=session.ssl is not None,
            spooled=spooled,
            authenticated=capture is not None,
            account=capture.account_id if capture is not None else None,
            star_for=capture.star_for if capture is not None else None,
        )

    def spool(self, server: SMTP, session: Session, envelope: Envelope) -> Spool:
        """Where the DATA of this transaction is collected (see :mod:`mailsac.spool`)."""
        assert isinstance(envelope, MailsacEnvelope)
        return self._delivery.spool(self._message(server, session, envelope))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope, MailsacEnvelope)
        content = envelope.original_content or b""
        spooled = envelope.spooled
        self.metrics.bytes_received += (spooled.content_size if spooled is not None
                                        else len(content))
        message = self._message(server, session, envelope, content, spooled)
        try:
            if self._gate is not None:  # the gate needs only the header block
                owners = [(r.inbox, self._owner_of(r.inbox)) for r in message.recipients]
                self._gate.on_data(message.client_ip, message.mail_from, envelope.header_block,
                                   [GateRecipient(inbox, owner is not None, owner)
                                    for inbox, owner in owners], account=message.account)
            if spooled is not None:
                spooled.taken = True  # from here on delivery commits or discards the draft
            # Shielded: a client that disconnects now must not abort a half-done store.
            records = await asyncio.shield(self._delivery.deliver(message))
        except MailsacError as exc:
            self.metrics.rejected(type(exc).__name__)
            log.warning("message from %s not stored: %s", message.client_ip, exc)
            return self._close_after_reply(server, str(replies.reply_for(exc)))
        except Exception:
            self.metrics.rejected("InternalError")
            log.exception("unexpected error storing a message from %s", message.client_ip)
            return str(replies.S554_INTERNAL_ERROR)
        self.metrics.accepted += 1
        ids = " ".join(r.id for r in records)
        return str(replies.S250_QUEUED.with_text(f"OK: message stored as {ids}"))

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return str(replies.S554_INTERNAL_ERROR)
