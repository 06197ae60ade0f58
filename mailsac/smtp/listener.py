"""The SMTP listening sockets (SMTP, optionally SMTPS) and their sessions' shared state:
admission, timeouts that tighten under pressure, the DATA memory budget, the certificate
store, and a graceful shutdown. The protocol itself is :mod:`mailsac.smtp.server`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from mailsac.gate import SenderGate
from mailsac.listeners.admission import Admission
from mailsac.listeners.proxy import HEADER_TIMEOUT, TrustedProxies
from mailsac.listeners.tls import CertificateStore
from mailsac.smtp import replies
from mailsac.smtp.budget import DataBudget
from mailsac.smtp.handler import MailsacHandler
from mailsac.smtp.server import (
    BUDGET_WAIT,
    DATA_MEMORY_BUDGET,
    TLS_HANDSHAKE_TIMEOUT,
    MailsacSMTP,
)

log = logging.getLogger(__name__)


class SmtpListener:
    """Owns the listening sockets (SMTP, optionally SMTPS) and the live sessions of both,
    which share one admission, for a graceful shutdown.

    ``proxies``: load balancers whose PROXY protocol header is required and believed
    (:mod:`mailsac.listeners.proxy`), within ``proxy_timeout`` seconds of connecting.
    ``tls`` is the certificate store (None: no STARTTLS, no SMTPS); ``smtp_options`` are
    passed to every :class:`MailsacSMTP` (aiosmtpd's ``authenticator=`` …), and
    :meth:`start` takes more per port.
    """

    def __init__(
        self, handler: MailsacHandler, *, hostname: str, max_message_size: int,
        timeout: float, admission: Admission | None = None, gate: SenderGate | None = None,
        pressure_timeout: float = 30.0, max_data_seconds: float = 600.0,
        max_commands: int = 1000, budget: DataBudget | None = None,
        budget_wait: float = BUDGET_WAIT, max_session_seconds: float = 1800.0,
        pressure_session_seconds: float = 300.0, tls: CertificateStore | None = None,
        require_tls: bool = False, tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
        proxies: TrustedProxies | None = None, proxy_timeout: float = HEADER_TIMEOUT,
        **smtp_options: Any,
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
        self.budget = budget or DataBudget(DATA_MEMORY_BUDGET)
        self.budget_wait = budget_wait
        self.max_session_seconds = max_session_seconds
        self.pressure_session_seconds = pressure_session_seconds
        self.tls = tls
        self.require_tls = require_tls
        self.tls_handshake_timeout = tls_handshake_timeout
        self.proxies = proxies or TrustedProxies()
        self.proxy_timeout = proxy_timeout
        self.smtp_options = smtp_options
        self.sessions: set[MailsacSMTP] = set()
        self.closing = False
        self._pressed = False
        self._servers: list[asyncio.base_events.Server] = []

    def under_pressure(self) -> bool:
        """More than half the slots are in use, or the service is overloaded."""
        return self.admission.pressure >= 0.5

    def idle_timeout(self) -> float:
        """RFC 5321 §4.5.3.2 timeouts normally; much shorter when slots are scarce."""
        if self.under_pressure():
            return min(self.timeout, self.pressure_timeout)
        return self.timeout

    def session_lifetime(self) -> float:
        """The longest a session may last, counted from its connection."""
        if self.under_pressure():
            return min(self.max_session_seconds, self.pressure_session_seconds)
        return self.max_session_seconds

    def handshake_timeout(self, started: float) -> float:
        """Seconds a TLS handshake may take: never past the session's lifetime."""
        left = started + self.session_lifetime() - time.monotonic()
        return max(0.1, min(self.tls_handshake_timeout, left))

    def check_pressure(self) -> None:
        """Periodic (loop monitor tick): when pressure starts, cut the timers of sessions
        armed with the relaxed limits, instead of letting them run out."""
        pressed = self.under_pressure()
        if pressed and not self._pressed:
            for session in list(self.sessions):
                if not session.busy and session.transport is not None:
                    session._arm()
        self._pressed = pressed

    def _factory(self, implicit_tls: bool, options: dict[str, Any]) -> MailsacSMTP:
        return MailsacSMTP(
            self.handler, listener=self, hostname=self.hostname,
            data_size_limit=self.max_message_size, enable_SMTPUTF8=True,
            decode_data=False, timeout=self.timeout, ident="mailsac ESMTP ready",
            command_call_limit=self.max_commands, loop=asyncio.get_running_loop(),
            # Only its truth matters to aiosmtpd (EHLO, HELP): handshakes use the store's
            # current context, so a reloaded certificate reaches sessions already open.
            tls_context=self.tls.context if self.tls is not None else None,
            implicit_tls=implicit_tls, **{**self.smtp_options, **options},
        )

    async def start(self, host: str, port: int, *, implicit_tls: bool = False,
                    reuse_port: bool = False, **options: Any) -> int:
        """Start listening (again for each port); return the bound port (useful with
        port 0). ``implicit_tls``: SMTPS, TLS from the first byte. ``reuse_port``: other
        processes (``--processes``) listen on the same port (SO_REUSEPORT). ``options``
        go to the sessions of this port only (on top of ``smtp_options``)."""
        if implicit_tls and self.tls is None:
            raise ValueError("implicit TLS needs a certificate store")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            functools.partial(self._factory, implicit_tls, options), host=host, port=port,
            reuse_address=True, reuse_port=reuse_port or None)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        log.info("%s listening on %s:%d", "SMTPS" if implicit_tls else "SMTP", host, bound)
        return int(bound)

    @property
    def listening(self) -> bool:
        """The first (main) port accepts connections."""
        return bool(self._servers) and self._servers[0].is_serving()

    async def stop(self, grace: float) -> None:
        """Stop accepting; close idle sessions with 421; give busy ones ``grace`` seconds."""
        self.closing = True
        for server in self._servers:
            server.close()
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
        for server in self._servers:
            await server.wait_closed()
        log.info("SMTP listener stopped")
