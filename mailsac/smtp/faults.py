"""Failure injection in an SMTP session: carry out what a chaos rule decided.

The server calls these only while :attr:`mailsac.chaos.Chaos.active` (a live rule exists).
Each returns the reply to send instead of the normal one, or None to carry on normally (a
``delay`` has then already been waited out). A ``drop`` closes the connection without a
reply; the session's task is cancelled by the closed connection, so it never returns.

Isolation: at ``rcpt`` a rule refuses only that recipient; at ``data`` an address or
domain rule fires only when it covers every recipient of the message (otherwise the
message is stored for all, as usual), and a message refused at ``data`` is not stored.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailsac.chaos import Chaos, Fault
from mailsac.policy import Recipient
from mailsac.timeutil import sleep_at_least

if TYPE_CHECKING:
    from mailsac.smtp.handler import MailsacEnvelope

DROP_WAIT = 5.0  # seconds for the closed connection to cancel the session


def _ip(session: Session | None) -> str:
    peer: Any = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) else ""


def _sender(envelope: Envelope | None) -> str | None:
    mail_from = envelope.mail_from if envelope is not None else None
    return None if mail_from in (None, "<>") else mail_from


async def _carry_out(server: SMTP, fault: Fault | None) -> str | None:
    if fault is None:
        return None
    if fault.action == "delay":
        await sleep_at_least(fault.delay)
        return None
    if fault.action == "drop":
        transport: Any = server.transport  # asyncio's or uvloop's (not a WriteTransport)
        if transport is not None:
            transport.abort()  # no reply, no flush of anything held back
        await asyncio.sleep(DROP_WAIT)  # connection_lost cancels this task meanwhile
        raise ConnectionResetError("connection dropped by a chaos rule")
    return fault.reply


async def at_connect(chaos: Chaos, server: SMTP) -> str | None:
    """Before the banner (global rules only): a reply here closes the connection."""
    return await _carry_out(server, await chaos.fire("connect", client_ip=_ip(server.session)))


async def at_mail(chaos: Chaos, server: SMTP, session: Session, address: str) -> str | None:
    sender = None if address == "<>" else address
    return await _carry_out(server, await chaos.fire(
        "mail", sender=sender, client_ip=_ip(session)))


async def at_rcpt(chaos: Chaos, server: SMTP, session: Session, envelope: Envelope,
                  recipient: Recipient) -> str | None:
    return await _carry_out(server, await chaos.fire(
        "rcpt", [recipient], sender=_sender(envelope), client_ip=_ip(session)))


async def at_data(chaos: Chaos, server: SMTP, envelope: MailsacEnvelope) -> str | None:
    """After the message was received, before it is stored: a reply here means the
    message is not stored (the client is told so by the 4xx/5xx); 421 then closes."""
    reply = await _carry_out(server, await chaos.fire(
        "data", envelope.recipients, sender=_sender(envelope), client_ip=_ip(server.session)))
    if reply is not None and reply.startswith("421") and server.transport is not None:
        asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply
    return reply
