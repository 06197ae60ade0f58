"""The POP3 listener on the shared event loop (``asyncio.start_server``, no threads).

Every connection passes :class:`~mailsac.smtp.admission.Admission` (caps per IP, per
network and in total, waiting for a slot while the loop is overloaded) before it gets
the greeting. Shutdown stops accepting, tells idle sessions goodbye at once, lets
sessions in the middle of a command (a ``RETR`` being streamed, the deletions after
``QUIT``) finish for up to ``grace`` seconds, then closes whatever is left. A session
closed this way never enters the UPDATE state, so it deletes nothing (RFC 1939 §6).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from mailsac.mailbox import Mailboxes
from mailsac.pop3.login import LoginChecker
from mailsac.pop3.session import SHUTTING_DOWN, Pop3Session
from mailsac.pop3.wire import STREAM_LIMIT, Wire
from mailsac.smtp.admission import Admission

log = logging.getLogger(__name__)


class Pop3Listener:
    """Owns the POP3 listening socket, its admission control and the live sessions."""

    def __init__(
        self, checker: LoginChecker, mailboxes: Mailboxes, *, hostname: str,
        timeout: float = 600.0, admission: Admission | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.checker = checker
        self.mailboxes = mailboxes
        self.hostname = hostname
        self.timeout = timeout
        self.admission = admission or Admission()
        self.tls = tls
        self.closing = False
        self.sessions: set[Pop3Session] = set()
        self._connections: dict[asyncio.Task[None], Wire] = {}
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Start listening; return the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._connected, host=host, port=port, limit=STREAM_LIMIT, reuse_address=True)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("POP3 listening on %s:%d%s", host, bound,
                 " (STLS available)" if self.tls is not None else "")
        return bound

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
            await self._serve(wire, ip)
        except asyncio.CancelledError:
            pass  # only stop() cancels, as a last resort: end quietly
        finally:
            self._connections.pop(task, None)
            wire.close()

    async def _serve(self, wire: Wire, ip: str) -> None:
        try:
            if self.closing:
                await wire.reply(SHUTTING_DOWN)
                return
            if not await self.admission.acquire(ip):
                await wire.reply(
                    f"-ERR [SYS/TEMP] too many connections from {ip} or the service is busy; "
                    f"try again in {int(self.admission.wait_timeout)} s")
                return
        except (OSError, TimeoutError):
            return
        session = Pop3Session(wire, ip, self)
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
