"""The SMTP listener on the shared event loop (aiosmtpd, unthreaded), with streaming DATA.

aiosmtpd reads DATA one line at a time in Python and never yields while lines are
buffered, so a 20 MB message costs hundreds of thousands of loop iterations and freezes
every other task. :class:`MailsacSMTP` replaces ``smtp_DATA`` with a chunked reader: it
decodes 64 KiB chunks as they arrive (:mod:`mailsac.smtp.datastream`: end-of-data marker
and dot-unstuffing at C speed, RFC 5321 §4.5.2), enforces the size limit while reading
(then drains and answers 552), and suspends between chunks so the HTTP API keeps answering.

Memory is bounded by construction: each DATA transfer holds a lease on a global byte
budget (:mod:`mailsac.smtp.budget`; ``451 4.3.1`` to DATA when none comes free within
:data:`BUDGET_WAIT` s). A small message is collected in memory; one that outgrows
:data:`MEMORY_MESSAGE_LIMIT` (or whose lease cannot grow) is streamed to its blob's temp
file (:mod:`mailsac.spool`), so a session never holds more than its lease.

Slots cannot be held forever: a session lives at most ``max_session_seconds`` (less under
pressure), and under pressure NOOP, RSET, HELP, VRFY and EXPN do not count as activity for
the idle timeout.

Two more hot spots of stock aiosmtpd are replaced, measured with ``python -m mailsac bench``
and py-spy: ``_getaddr`` builds a ``typing.Protocol`` class and runs the e-mail header
parser for every MAIL and RCPT (a plain ``<local@domain>`` now takes one regex match), and
every reply is its own socket write (pipelined 2xx replies are now sent together, as RFC
2920 §3.2 allows, when the client's next command is already buffered).

TLS (:mod:`mailsac.listeners.tls`: one certificate store for every listener): STARTTLS
(RFC 3207) is offered in EHLO; input pipelined behind it is discarded before the 220 is
sent (nothing sent in plaintext runs inside TLS: CVE-2011-0411), and after the handshake
the session starts over (EHLO again, no envelope). A listener started with
``implicit_tls`` (SMTPS, RFC 8314) runs the handshake right after admission, before the
banner. Every handshake is bounded by ``tls_handshake_timeout`` (and the session's
lifetime); one that fails or times out ends the session and frees its slot. With
``require_tls`` every command but NOOP, EHLO, STARTTLS and QUIT gets ``530 5.7.0`` until
TLS is active (RFC 3207 §4).

Behind a load balancer (:mod:`mailsac.listeners.proxy`): a connection from a trusted proxy
network starts with a PROXY protocol header, read before anything else (before the gate
and admission, and on SMTPS before the handshake: bytes of the ClientHello read with it
are handed to the TLS layer). The client it names becomes the session's peer, kept across
STARTTLS, so the gate, admission, AUTH limits, ``ip`` and ``Received:`` all see it. A bad
or missing header gets ``421`` (nothing on SMTPS) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import functools
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiosmtpd.smtp import SMTP, syntax

from mailsac.errors import MailsacError
from mailsac.listeners.proxy import ProxyHeaderError, read_header
from mailsac.smtp import faults, replies
from mailsac.smtp.budget import Lease
from mailsac.smtp.datastream import DotDecoder
from mailsac.smtp.handler import MailsacEnvelope, MailsacHandler
from mailsac.spool import HEAD_LIMIT, Spool

if TYPE_CHECKING:
    from mailsac.smtp.listener import SmtpListener

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
MEMORY_MESSAGE_LIMIT = 256 * 1024  # larger messages go to their blob file as they arrive
BASE_LEASE = CHUNK_SIZE + HEAD_LIMIT + 4096  # enough for a header block and one chunk
LEASE_STEP = 64 * 1024
BUDGET_WAIT = 2.0  # seconds DATA waits for memory before 451 4.3.1
DATA_MEMORY_BUDGET = 128 * 1024 * 1024
# Under pressure these do not count as activity (a NOOP every 29 s kept a slot forever).
KEEPALIVE_COMMANDS = ("NOOP", "RSET", "HELP", "VRFY", "EXPN")
ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})  # RFC 3207 §4
TLS_HANDSHAKE_TIMEOUT = 30.0

# RFC 5321 Path with a dot-atom local part and a plain domain: the common case, which
# needs none of the quoting, comments or source routes the full parser handles.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"\s*<({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>")


def _feed(tls: sslproto.SSLProtocol, buffered: bytearray) -> None:
    """Hand bytes already read into the plaintext buffer to the TLS layer, as the
    transport would have (SSLProtocol is a buffered protocol), and empty the buffer."""
    data = memoryview(bytes(buffered))
    buffered.clear()
    while data:
        target = tls.get_buffer(len(data))
        size = min(len(target), len(data))
        target[:size] = data[:size]
        tls.buffer_updated(size)
        data = data[size:]


class DataTooSlow(Exception):
    """DATA did not finish within the listener's ``max_data_seconds``."""


class MailsacSMTP(SMTP):
    """aiosmtpd's protocol with our DATA reader, envelope and shutdown behaviour."""

    def __init__(self, handler: MailsacHandler, *, listener: SmtpListener,
                 implicit_tls: bool = False, require_auth: bool = False, **kw: Any) -> None:
        self._listener = listener
        self.require_auth = require_auth  # the Email Capture port: MAIL needs AUTH first
        self._started = time.monotonic()
        self._activity = self._prev_activity = self._started
        self._delivering = False  # the handler is storing a message: do not cut it off
        self._implicit_tls = implicit_tls  # SMTPS: TLS from the first byte
        self._handshaking = False
        self._client: tuple[str, int] | None = None  # from a PROXY header, kept across TLS
        super().__init__(handler, **kw)
        self.busy = False  # between DATA and its reply: shutdown waits for this
        self._held = bytearray()  # 2xx replies held back while pipelined commands wait
        for name in KEEPALIVE_COMMANDS:
            method = self._smtp_methods.get(name)
            if method is not None:
                self._smtp_methods[name] = self._keepalive(method)
        if listener.require_tls and self.tls_context is not None:
            for name, method in list(self._smtp_methods.items()):
                if name not in ALLOWED_BEFORE_TLS:
                    self._smtp_methods[name] = self._tls_first(method)

    @property
    def tls_active(self) -> bool:
        """The session runs under TLS (after STARTTLS, or on the SMTPS port)."""
        return self.session is not None and self.session.ssl is not None

    @property
    def _may_reply(self) -> bool:
        """Plaintext replies would corrupt a handshake, or reach an SMTPS client."""
        return not self._handshaking and (self.tls_active or not self._implicit_tls)

    def _tls_first(self, method: Callable[[str], Awaitable[None]]
                   ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(method)
        async def command(arg: str) -> None:
            if not self.tls_active:
                await self.push(str(replies.S530_STARTTLS_FIRST))
                return
            await method(arg)

        return command

    def _keepalive(self, method: Callable[[str], Awaitable[None]]
                   ) -> Callable[[str], Awaitable[None]]:
        @functools.wraps(method)  # keeps aiosmtpd's HELP syntax attributes
        async def command(arg: str) -> None:
            if self._listener.under_pressure():
                self._activity = self._prev_activity  # not progress: the idle clock runs on
                self._arm()
            await method(arg)

        return command

    def _create_envelope(self) -> MailsacEnvelope:
        return MailsacEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._implicit_tls and self._original_transport is None:
            # SMTPS: read nothing until the TLS layer is in place (after admission), so
            # the ClientHello reaches it instead of the plaintext command reader.
            cast(asyncio.Transport, transport).pause_reading()  # (uvloop's is no subclass)
        super().connection_made(transport)  # after a handshake: the session starts over
        if self._client is not None and self.session is not None:
            # aiosmtpd reset it to the balancer's address (it types peer as str; it is
            # the socket's (host, port) tuple)
            self.session.peer = self._client  # type: ignore[assignment]
        self._listener.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._listener.sessions.discard(self)
        super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        # Called by aiosmtpd for every valid command, and by the DATA reader per chunk.
        self._prev_activity, self._activity = self._activity, time.monotonic()
        self._arm(duration)

    def _arm(self, duration: float | None = None) -> None:
        """(Re)start the timer: idle timeout from the last activity (shorter under
        pressure), never beyond the session's lifetime."""
        listener = self._listener
        idle = duration if duration is not None else listener.idle_timeout()
        deadline = min(self._activity + idle, self._started + listener.session_lifetime())
        super()._reset_timeout(max(0.01, deadline - time.monotonic()))

    def _timeout_cb(self) -> None:
        if self._delivering:  # storing a message: its reply is due in a moment
            super()._reset_timeout(1.0)
            return
        expired = time.monotonic() >= self._started + self._listener.session_lifetime() - 0.1
        reply = replies.S421_SESSION_TOO_LONG if expired else replies.S421_IDLE
        if self.transport is not None and not self.transport.is_closing() and self._may_reply:
            self._writer.write(f"{reply}\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

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
        if not self._may_reply:
            return  # e.g. shutdown during a TLS handshake: the connection is just closed
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
        if not self._may_reply:  # an SMTPS client before the handshake would not read it
            log.info("connection refused before TLS: %s", reply)
        try:
            await self.push(reply)
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _proxied_client(self) -> bool:
        """From a trusted proxy: read its PROXY header and make the client it names the
        session's peer. False (connection refused) when the header is bad or missing."""
        assert self.session is not None
        peer: Any = self.session.peer
        listener = self._listener
        if not isinstance(peer, tuple) or not listener.proxies.trusts(str(peer[0])):
            return True
        transport = cast(asyncio.Transport, self.transport)  # asyncio's or uvloop's
        transport.resume_reading()  # SMTPS pauses until TLS; the header comes before it
        try:
            header = await read_header(self._reader, listener.proxy_timeout)
        except ProxyHeaderError as exc:
            log.warning("connection from proxy %s refused: %s", peer[0], exc)
            # The balancer relays this to whoever connected: a missing send-proxy shows
            # up as a clear reason rather than a bare disconnect (RFC 5321 §3.8 allows a
            # 421 in place of the greeting). Never in plaintext to an SMTPS client.
            try:
                await self._refuse(str(replies.S421_PROXY_HEADER))
            except ConnectionError:
                pass  # it had already gone
            return False
        if self._implicit_tls:
            transport.pause_reading()  # the ClientHello waits for the TLS layer
        if header.source is not None:
            self._client = (header.source[0], header.source[1])
            self.session.peer = self._client  # type: ignore[assignment]
        return True

    async def _handle_client(self) -> None:
        """Gate the connection (deny-list, connection rate, slots) before the banner; from
        a trusted load balancer, first learn the real client from its PROXY header."""
        assert self.session is not None
        if not await self._proxied_client():
            return
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
            if self._implicit_tls:
                assert listener.tls is not None
                if not await self._start_tls(listener.tls.context):
                    return
            chaos = self.event_handler.chaos  # failure injection (mailsac.smtp.faults)
            if chaos is not None and chaos.active and (
                    injected := await faults.at_connect(chaos, self)) is not None:
                await self._refuse(injected)  # instead of the banner, then closed
                return
            await super()._handle_client()
        finally:
            listener.admission.release(ip)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """RFC 3207: discard what was pipelined behind STARTTLS, answer 220, handshake."""
        if arg:
            await self.push("501 5.5.4 Syntax: STARTTLS")
            return
        store = self._listener.tls
        if store is None or self.tls_context is None:
            await self.push(str(replies.S454_TLS_UNAVAILABLE))
            return
        if self._tls_protocol is not None:
            await self.push(str(replies.S503_TLS_ACTIVE))
            return
        buffered: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        if buffered:  # CVE-2011-0411: a command injected here must never run inside TLS
            assert self.session is not None
            log.info("%r pipelined %d bytes after STARTTLS: discarded", self.session.peer,
                     len(buffered))
            buffered.clear()
        transport = cast(asyncio.Transport, self.transport)  # asyncio's or uvloop's
        assert transport is not None
        # Straight to the socket: push() would hold a 2xx back if more input were queued.
        ready = bytes(self._held) + str(replies.S220_TLS_READY).encode() + b"\r\n"
        self._held.clear()
        transport.write(ready)
        await self._start_tls(store.context)

    async def _start_tls(self, context: ssl.SSLContext) -> bool:
        """Run the server side of a TLS handshake on this connection. True once it
        completed (aiosmtpd's ``connection_made`` then restarts the session with
        ``session.ssl`` set); False after a failure or timeout, with the session ended."""
        # uvloop's transports implement asyncio.Transport without subclassing it
        raw = cast(asyncio.Transport, self.transport)
        assert raw is not None and self.session is not None
        waiter: asyncio.Future[None] = self.loop.create_future()
        tls = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True,
            # typeshed says int; asyncio takes any positive number
            ssl_handshake_timeout=self._listener.handshake_timeout(  # type: ignore[arg-type]
                self._started))
        self._tls_protocol = tls
        self._original_transport = raw
        self._handshaking = True
        raw.set_protocol(tls)
        self.transport = tls._app_transport
        tls.connection_made(raw)
        if self._implicit_tls:  # read after a PROXY header: the start of the ClientHello
            _feed(tls, self._reader._buffer)  # type: ignore[attr-defined]
        raw.resume_reading()  # paused by SMTPS, or by the reader's full buffer
        error: BaseException | None = None
        try:
            await waiter
        except (OSError, EOFError) as exc:  # ssl.SSLError, timeout, reset
            error = exc
        finally:
            self._handshaking = False
        if self.session.ssl is not None:
            return True
        log.info("TLS handshake with %r failed: %s", self.session.peer,
                 error or "connection closed")
        # asyncio never tells the app protocol about a connection whose handshake
        # failed: end the session here (closes the socket, stops the command loop).
        self.connection_lost(error if isinstance(error, Exception) else None)
        return False

    async def _collect(self, spool: Spool, lease: Lease, data: bytes) -> None:
        """Add decoded DATA to ``spool``, within ``lease``: grow the lease while the
        message is small and memory is free, else move what is buffered to the file."""
        need = spool.memory + len(data)
        if need > lease.size:
            step = -(-need // LEASE_STEP) * LEASE_STEP
            if (spool.spooled is not None or step > MEMORY_MESSAGE_LIMIT + HEAD_LIMIT
                    or not lease.grow(step)):
                await spool.spill()
        spool.append(data)

    async def _read_data(self, spool: Spool, lease: Lease) -> str | None:
        """Read up to the end-of-data line into ``spool``; return None when the whole
        message is there, else the reply to send (after the rest was read and dropped)."""
        reader = self._reader
        limit = self.data_size_limit or 0
        decoder = DotDecoder()
        failure: str | None = None
        deadline = min(time.monotonic() + self._listener.max_data_seconds,
                       self._started + self._listener.session_lifetime())
        while not decoder.done:
            if time.monotonic() > deadline:  # a dribbling client cannot hold a slot forever
                raise DataTooSlow
            chunk = await reader.read(CHUNK_SIZE)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()  # an active upload is not an idle session
            data = decoder.feed(chunk)
            if failure is not None:
                continue  # draining: the reply is decided
            if limit and decoder.data_len > limit:
                failure = str(replies.too_big(limit))
            else:
                try:
                    await self._collect(spool, lease, data)
                except MailsacError as exc:  # the disk is full or failing
                    log.warning("cannot spool DATA: %s", exc)
                    failure = str(replies.reply_for(exc))
            if failure is not None:
                spool.discard()
        if decoder.leftover:  # pipelined commands after the dot: give them back
            reader._buffer[0:0] = decoder.leftover  # type: ignore[attr-defined]
        if failure is None and spool.spooled is not None:
            try:
                await spool.spill()  # the rest of the message to the file
            except MailsacError as exc:
                failure = str(replies.reply_for(exc))
        return failure

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        envelope = self.envelope
        assert isinstance(envelope, MailsacEnvelope)
        if not envelope.rcpt_tos:
            await self.push(str(replies.S553_NO_RECIPIENTS))
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        assert self.session is not None
        lease = await self._listener.budget.acquire(BASE_LEASE, self._listener.budget_wait)
        if lease is None:
            log.warning("DATA memory budget exhausted; answering 451")
            await self.push(str(replies.S451_DATA_MEMORY))
            return
        handler = self.event_handler
        assert isinstance(handler, MailsacHandler)
        spool = handler.spool(self, self.session, envelope)
        self.busy = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            started = time.monotonic()
            try:
                failure = await self._read_data(spool, lease)
            except DataTooSlow:
                await self._refuse(str(replies.S421_TOO_SLOW))
                return
            if failure is None and handler.chaos is not None and handler.chaos.active:
                failure = await faults.at_data(handler.chaos, self, envelope)  # not stored
            if failure is not None:
                await self.push(failure)
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                return
            envelope.header_block = spool.header_block()
            if spool.spooled is not None:
                envelope.spooled = spool.spooled
                lease.release()  # nothing of this message is left in memory
            else:
                envelope.original_content = envelope.content = spool.take()
            self._delivering = True
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self._delivering = False
            log.debug("DATA of %d bytes handled in %.1f ms", spool.size,
                      (time.monotonic() - started) * 1000)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(status)
        finally:
            lease.release()
            spool.discard()  # a disconnect or rejection leaves no temp file behind
            self.busy = False
        if self._listener.closing:
            await self.push(str(replies.S421_SHUTTING_DOWN))
            if self.transport is not None:
                self.transport.close()
