"""The SMTP listener on the shared event loop (aiosmtpd, unthreaded), with streaming DATA.

aiosmtpd reads DATA one line at a time in Python and never yields while lines are
buffered, so a 20 MB message costs hundreds of thousands of loop iterations and freezes
every other task. :class:`MailsacSMTP` replaces ``smtp_DATA`` with a chunked reader: it
scans 64 KiB chunks for the end-of-data marker with ``bytearray.find`` (C speed), unstuffs
dots once at the end (RFC 5321 §4.5.2), enforces the size limit while reading (then drains
and answers 552), and suspends between chunks so the HTTP API keeps answering.

Two more hot spots of stock aiosmtpd are replaced, measured with ``python -m mailsac bench``
and py-spy: ``_getaddr`` builds a ``typing.Protocol`` class and runs the e-mail header
parser for every MAIL and RCPT (a plain ``<local@domain>`` now takes one regex match), and
every reply is its own socket write (pipelined 2xx replies are now sent together, as RFC
2920 §3.2 allows, when the client's next command is already buffered).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from aiosmtpd.smtp import SMTP, syntax

from mailsac.errors import MailsacError
from mailsac.gate import SenderGate
from mailsac.smtp import replies
from mailsac.smtp.admission import Admission
from mailsac.smtp.handler import MailsacEnvelope, MailsacHandler

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
_END_OF_DATA = b"\r\n.\r\n"

# RFC 5321 Path with a dot-atom local part and a plain domain: the common case, which
# needs none of the quoting, comments or source routes the full parser handles.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"\s*<({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>")


class DataTooSlow(Exception):
    """DATA did not finish within the listener's ``max_data_seconds``."""


class MailsacSMTP(SMTP):
    """aiosmtpd's protocol with our DATA reader, envelope and shutdown behaviour."""

    def __init__(self, handler: MailsacHandler, *, listener: SmtpListener, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._listener = listener
        self.busy = False  # between DATA and its reply: shutdown waits for this
        self._held = bytearray()  # 2xx replies held back while pipelined commands wait

    def _create_envelope(self) -> MailsacEnvelope:
        return MailsacEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._listener.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._listener.sessions.discard(self)
        super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        # Idle sessions get less time while the service is under pressure.
        super()._reset_timeout(duration if duration is not None
                               else self._listener.idle_timeout())

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parser, with a fast path for a plain ``<local@domain>``.

        Input the full parser crashes on (``"<"``, ``"<a@["``) is a malformed address (553),
        not an internal error (554)."""
        match = _SIMPLE_PATH.match(arg)
        rest = arg[match.end():] if match is not None else ""
        if match is None or "(" in rest:  # comments after the path: the full parser
            try:
                return super()._getaddr(arg)
            except Exception:  # the e-mail header parser crashes on some input ("<a@[")
                return None, None  # aiosmtpd answers "553 5.1.3 malformed address"
        if self.local_part_limit and len(match.group(1)) > self.local_part_limit:
            return None, None
        return f"{match.group(1)}@{match.group(2)}", rest.lstrip()

    def _next_command_buffered(self) -> bool:
        buffered: bytearray | None = getattr(self._reader, "_buffer", None)
        return buffered is not None and b"\n" in buffered

    async def push(self, status: str | bytes) -> None:
        """Send a reply, or hold a 2xx one back while the next command is already here.

        Held replies go out together with the next reply that is sent (at the latest the
        354 of DATA or the reply to the last buffered command), in one socket write.
        """
        response = status.encode("utf-8") if isinstance(status, str) else status
        if (response[:1] == b"2" and response[:3] != b"221" and self.transport is not None
                and not self.transport.is_closing() and self._next_command_buffered()):
            self._held += response + b"\r\n"
            return
        if self._held:
            response = bytes(self._held) + response
            self._held.clear()
        self._writer.write(response + b"\r\n")
        await self._writer.drain()

    async def _refuse(self, reply: str) -> None:
        try:
            await self.push(reply)
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _handle_client(self) -> None:
        """Gate the connection (deny-list, connection rate, slots) before the banner."""
        assert self.session is not None
        peer: Any = self.session.peer
        ip = str(peer[0]) if isinstance(peer, tuple) else ""
        listener = self._listener
        if listener.gate is not None:
            try:
                listener.gate.on_connect(ip)
            except MailsacError as exc:
                await self._refuse(str(replies.reply_for(exc)))
                return
        if not await listener.admission.acquire(ip):
            await self._refuse(str(replies.S421_BUSY.with_text(
                f"Too many connections from {ip} or the service is busy; "
                f"try again in {int(listener.admission.wait_timeout)} s")))
            return
        try:
            await super()._handle_client()
        finally:
            listener.admission.release(ip)

    async def _read_data(self) -> bytes | None:
        """Read up to the end-of-data line; return the unstuffed body, or None if too big."""
        reader = self._reader
        limit = self.data_size_limit or 0
        # A virtual CRLF in front lets one search find the terminator even when the very
        # first line is the lone dot (an empty message).
        buf = bytearray(b"\r\n")
        scanned = 0
        oversized = False
        deadline = time.monotonic() + self._listener.max_data_seconds
        while True:
            if time.monotonic() > deadline:  # a dribbling client cannot hold a slot forever
                raise DataTooSlow
            chunk = await reader.read(CHUNK_SIZE)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()  # an active upload is not an idle session
            buf += chunk
            end = buf.find(_END_OF_DATA, max(0, scanned - len(_END_OF_DATA)))
            if end >= 0:
                break
            scanned = len(buf)
            if limit and len(buf) - 2 > limit:
                # Keep only a tail long enough to spot a terminator split across chunks.
                oversized = True
                del buf[: len(buf) - len(_END_OF_DATA)]
                scanned = len(buf)
        leftover = bytes(buf[end + len(_END_OF_DATA):])
        if leftover:  # pipelined commands after the dot: give them back to the reader
            reader._buffer[0:0] = leftover  # type: ignore[attr-defined]
        if oversized or (limit and end > limit):
            return None
        # One copy of the message, without the virtual CRLF; unstuffing copies only if a
        # line starts with a dot.
        data = bytes(memoryview(buf)[2:end + 2])
        if data[:1] == b".":
            data = data[1:]
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n")
        return data

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(str(replies.S553_NO_RECIPIENTS))
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self.busy = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            started = time.monotonic()
            try:
                content = await self._read_data()
            except DataTooSlow:
                await self._refuse(str(replies.S421_TOO_SLOW))
                return
            if content is None:
                await self.push(str(replies.too_big(self.data_size_limit or 0)))
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                return
            self.envelope.original_content = content
            self.envelope.content = content
            status = await self._call_handler_hook("DATA")
            log.debug("DATA of %d bytes handled in %.1f ms", len(content),
                      (time.monotonic() - started) * 1000)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
        finally:
            self.busy = False
        if self._listener.closing:
            await self.push(str(replies.S421_SHUTTING_DOWN))
            if self.transport is not None:
                self.transport.close()


class SmtpListener:
    """Owns the listening socket and the live sessions, for a graceful shutdown."""

    def __init__(
        self, handler: MailsacHandler, *, hostname: str, max_message_size: int,
        timeout: float, admission: Admission | None = None, gate: SenderGate | None = None,
        pressure_timeout: float = 30.0, max_data_seconds: float = 600.0,
        max_commands: int = 1000,
    ) -> None:
        self.handler = handler
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.timeout = timeout
        self.admission = admission or Admission()
        self.gate = gate
        self.pressure_timeout = pressure_timeout
        self.max_data_seconds = max_data_seconds
        self.max_commands = max_commands
        self.sessions: set[MailsacSMTP] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    def idle_timeout(self) -> float:
        """RFC 5321 §4.5.3.2 timeouts normally; much shorter when slots are scarce."""
        if self.admission.pressure >= 0.5:
            return min(self.timeout, self.pressure_timeout)
        return self.timeout

    def _factory(self) -> MailsacSMTP:
        return MailsacSMTP(
            self.handler, listener=self, hostname=self.hostname,
            data_size_limit=self.max_message_size, enable_SMTPUTF8=True,
            decode_data=False, timeout=self.timeout, ident="mailsac ESMTP ready",
            command_call_limit=self.max_commands, loop=asyncio.get_running_loop(),
        )

    async def start(self, host: str, port: int) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, host=host, port=port,
                                                reuse_address=True)
        bound = self._server.sockets[0].getsockname()[1]
        log.info("SMTP listening on %s:%d", host, bound)
        return int(bound)

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def stop(self, grace: float) -> None:
        """Stop accepting; close idle sessions with 421; give busy ones ``grace`` seconds."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            if not session.busy and session.transport is not None:
                try:
                    await asyncio.wait_for(session.push(str(replies.S421_SHUTTING_DOWN)), 1.0)
                except (TimeoutError, OSError, AssertionError):
                    pass
                session.transport.close()
        deadline = time.monotonic() + grace
        while any(s.busy for s in self.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("SMTP listener stopped")
