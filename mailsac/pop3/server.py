"""The POP3 listener on the shared event loop (``asyncio.start_server``, no threads).

Every connection passes :class:`~mailsac.smtp.admission.Admission` (caps per IP, per
network and in total, waiting for a slot while the loop is overloaded) before it gets
the greeting, and before that the deny-list (the SMTP gate's, passed in as a callable)
and a second, smaller :class:`Admission` for sessions that have not logged in yet: it
refuses at once (no waiting) beyond ``MAILSAC_POP3_PRELOGIN_*``, and a session that does
not log in within ``login_timeout`` is closed, so clients without a key cannot fill the
slots of those who have one. From a trusted load balancer (``MAILSAC_TRUSTED_PROXIES``) a
PROXY protocol header comes first (:mod:`mailsac.listeners.proxy`) and names the client
all of this applies to; a bad or missing one closes the connection.

Shutdown stops accepting, tells idle sessions goodbye at once, lets sessions in the middle
of a command (a ``RETR`` being streamed, the deletions after ``QUIT``) finish for up to
``grace`` seconds, then closes whatever is left. A session closed this way never enters
the UPDATE state, so it deletes nothing (RFC 1939 §6).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from mailsac.listeners.admission import Admission
from mailsac.listeners.logins import is_loopback
from mailsac.listeners.proxy import (
    HEADER_TIMEOUT,
    ProxyHeaderError,
    TrustedProxies,
    client_address,
)
from mailsac.listeners.tls import CertificateStore
from mailsac.mailbox import Mailboxes
from mailsac.pop3.login import LoginChecker
from mailsac.pop3.session import SHUTTING_DOWN, Pop3Session
from mailsac.pop3.wire import STREAM_LIMIT, Wire

log = logging.getLogger(__name__)

DenyCheck = Callable[[str], "str | None"]
"""Client IP -> the reason it is deny-listed, or None when it may connect."""


class Pop3Listener:
    """Owns the POP3 listening socket, its admission control and the live sessions."""

    def __init__(
        self, checker: LoginChecker, mailboxes: Mailboxes, *, hostname: str,
        timeout: float = 600.0, admission: Admission | None = None,
        tls: CertificateStore | None = None, prelogin: Admission | None = None,
        denied: DenyCheck | None = None, plaintext_loopback: bool = False,
        login_timeout: float = 30.0, max_session_seconds: float = 3600.0,
        proxies: TrustedProxies | None = None, proxy_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.checker = checker
        self.mailboxes = mailboxes
        self.hostname = hostname
        self.timeout = timeout
        self.admission = admission or Admission()
        self.prelogin = prelogin or Admission(
            max_total=100, max_per_ip=10, max_per_network=30, wait_timeout=0.0)
        self.denied = denied
        self.certificates = tls
        self.plaintext_loopback = plaintext_loopback
        self.login_timeout = login_timeout
        self.max_session_seconds = max_session_seconds
        self.proxies = proxies or TrustedProxies()
        self.proxy_timeout = proxy_timeout
        self._unauthenticated: set[Pop3Session] = set()
        self.closing = False
        self.sessions: set[Pop3Session] = set()
        self._connections: dict[asyncio.Task[None], Wire] = {}
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start listening; return the bound port (useful with port 0). ``reuse_port``:
        other processes (``--processes``) listen on the same port (SO_REUSEPORT)."""
        self._server = await asyncio.start_server(
            self._connected, host=host, port=port, limit=STREAM_LIMIT, reuse_address=True,
            reuse_port=reuse_port or None)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("POP3 listening on %s:%d%s", host, bound,
                 " (STLS available)" if self.tls is not None else "")
        return bound

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The context for ``STLS`` now (the shared store's, current after reloads)."""
        return self.certificates.context if self.certificates is not None else None

    def plaintext_allowed(self, ip: str) -> bool:
        """May ``ip`` send credentials without TLS? Yes without a certificate (nothing else
        to offer); with one (always, unless a test builds a listener without one), only
        loopback clients and only when ``MAILSAC_POP3_PLAINTEXT_LOOPBACK`` is on."""
        return self.tls is None or (self.plaintext_loopback and is_loopback(ip))

    def logged_in(self, session: Pop3Session) -> None:
        """A session logged in: it no longer counts against the pre-login caps."""
        if session in self._unauthenticated:
            self._unauthenticated.discard(session)
            self.prelogin.release(session.ip)

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def _connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else ""
        wire = Wire(reader, writer, self.timeout)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = wire
        try:
            client = await self._client_ip(wire, ip)
            if client is not None:  # None: a trusted proxy sent no valid header
                await self._serve(wire, client)
        except asyncio.CancelledError:
            pass  # only stop() cancels, as a last resort: end quietly
        finally:
            self._connections.pop(task, None)
            wire.close()

    async def _client_ip(self, wire: Wire, peer: str) -> str | None:
        """The client: ``peer`` itself, or from a trusted proxy the one its PROXY header
        names (None when that header is bad or missing: the connection is refused)."""
        try:
            client = await client_address(wire.reader, (peer, 0), self.proxies,
                                          self.proxy_timeout)
        except ProxyHeaderError as exc:
            log.warning("POP3 connection from proxy %s refused: %s", peer, exc)
            try:  # relayed to whoever connected: a clear reason, not a bare disconnect
                await wire.reply("-ERR [SYS/TEMP] expected a valid PROXY protocol header "
                                 "from this load balancer")
            except (OSError, TimeoutError):
                pass
            return None
        return client[0]

    async def _serve(self, wire: Wire, ip: str) -> None:
        try:
            if self.closing:
                await wire.reply(SHUTTING_DOWN)
                return
            reason = self.denied(ip) if self.denied is not None else None
            if reason is not None:
                await wire.reply(f"-ERR [SYS/PERM] connections from {ip} are refused: {reason}")
                return
            if not await self.prelogin.acquire(ip):
                await wire.reply(f"-ERR [SYS/TEMP] too many connections from {ip} that have "
                                 "not logged in; log in or disconnect them first")
                return
        except (OSError, TimeoutError):
            return
        session = Pop3Session(wire, ip, self)
        self._unauthenticated.add(session)
        try:
            await self._admitted(session)
        finally:
            self.logged_in(session)  # gives the pre-login slot back if still held

    async def _admitted(self, session: Pop3Session) -> None:
        """Past the deny-list and the pre-login cap: take a session slot and run."""
        wire, ip = session.wire, session.ip
        try:
            if not await self.admission.acquire(ip):
                await wire.reply(
                    f"-ERR [SYS/TEMP] too many connections from {ip} or the service is busy; "
                    f"try again in {int(self.admission.wait_timeout)} s")
                return
        except (OSError, TimeoutError):
            return
        self.sessions.add(session)
        try:
            await session.run()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # disconnect or autologout (RFC 1939 §3: close without a response)
        except Exception:
            log.exception("POP3 session with %s failed", ip)
        finally:
            self.sessions.discard(session)
            self.admission.release(ip)

    async def stop(self, grace: float) -> None:
        """Stop accepting; say goodbye to idle sessions; give busy ones ``grace`` seconds."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            if not session.busy:
                await self._goodbye(session.wire)
        deadline = time.monotonic() + grace
        while any(s.busy for s in self.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for wire in list(self._connections.values()):
            wire.close()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("POP3 listener stopped")

    @staticmethod
    async def _goodbye(wire: Wire) -> None:
        try:
            wire.writer.write(SHUTTING_DOWN.encode() + b"\r\n")
        except (OSError, RuntimeError):
            pass
        wire.close()
