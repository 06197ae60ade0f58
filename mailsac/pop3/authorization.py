"""The AUTHORIZATION state (RFC 1939 §4): USER/PASS, AUTH PLAIN and STLS.

* ``USER`` takes the inbox address in any form the API accepts (``Jeff+tag@X.test`` is
  the inbox ``jeff@x.test``); a malformed address is refused at once, an unknown one is
  not (the reply never tells whether an inbox exists). ``PASS`` takes an API key.
* ``AUTH PLAIN`` (RFC 5034, RFC 4616): with an initial response or after a ``+ ``
  continuation; ``*`` cancels; the authorization identity must be empty or the address.
* ``STLS`` (RFC 2595 §4), with the certificate all listeners share (configured, or the
  generated self-signed one, so always in the service); input the client pipelined
  behind it is discarded so that nothing sent in plaintext runs inside TLS.
* Credentials are never taken in plaintext from the network: ``USER``, ``PASS`` and
  ``AUTH`` answer ``-ERR [AUTH] ... use STLS first`` (and ``CAPA`` does not offer them)
  until TLS is active, except from loopback clients while
  ``MAILSAC_POP3_PLAINTEXT_LOOPBACK`` allows it (the default: a key typed on this machine
  crosses no network, and local tools and CI jobs keep working without a certificate).
  A listener built without a certificate (tests) has nothing else to offer and takes
  plaintext logins from anyone.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

from mailsac.errors import InvalidAddress, StorageUnavailable
from mailsac.pop3.login import Login, LoginFailed, TooManyFailures, decode_plain
from mailsac.pop3.wire import MAX_SASL_LINE, Bad, LineTooLong, Wire

if TYPE_CHECKING:
    from mailsac.pop3.server import Pop3Listener

log = logging.getLogger(__name__)

UNAVAILABLE = "-ERR [SYS/TEMP] storage is unavailable, try again later"
BAD_LOGIN = "-ERR [AUTH] invalid address or API key, or the key may not read that inbox"
NEED_TLS = "[AUTH] plaintext logins are disabled on this server: use STLS first"


class AuthorizationCommands:
    """The AUTHORIZATION-state commands of :class:`~mailsac.pop3.session.Pop3Session`."""

    wire: Wire
    ip: str
    listener: Pop3Listener
    user: str | None
    login: Login | None
    tls: bool
    done: bool

    @property
    def may_login(self) -> bool:
        """Credentials may be sent now: over TLS, or where plaintext is allowed."""
        return self.tls or self.listener.plaintext_allowed(self.ip)

    def _require_tls(self) -> None:
        if not self.may_login:
            raise Bad(NEED_TLS)

    def logged_in(self) -> None:
        """Hook called after a successful login (the session lifts its pre-login limits)."""

    async def cmd_user(self, args: list[str], _: str) -> None:
        """RFC 1939 §7 USER: the inbox address (any form the API accepts)."""
        self._require_tls()
        if len(args) != 1:
            raise Bad("syntax: USER address")
        try:
            self.listener.checker.inbox_of(args[0])
        except InvalidAddress as exc:
            self.user = None
            raise Bad(f"invalid address: {exc.reason}") from None
        self.user = args[0]
        await self.wire.reply("+OK now send an API key that may read this inbox with PASS")

    async def cmd_pass(self, args: list[str], rest: str) -> None:
        """RFC 1939 §7 PASS: an API key (the whole rest of the line)."""
        self._require_tls()
        if self.user is None:
            raise Bad("send USER first")
        if not rest:
            raise Bad("syntax: PASS api-key")
        user, self.user = self.user, None
        await self._login(user, rest)

    async def cmd_auth(self, args: list[str], _: str) -> None:
        """RFC 5034 AUTH with the PLAIN mechanism (RFC 4616)."""
        self._require_tls()
        if not args:  # RFC 1734's mechanism listing, still used by some clients
            await self.wire.multiline("+OK SASL mechanisms follow", ["PLAIN"])
            return
        if args[0].upper() != "PLAIN" or len(args) > 2:
            raise Bad("unrecognized authentication type (only PLAIN is supported)")
        if len(args) == 2:
            response = "" if args[1] == "=" else args[1]  # RFC 5034 §4: "=" is empty
        else:
            await self.wire.reply("+ ")
            try:
                line = await self.wire.read_line(MAX_SASL_LINE)
            except LineTooLong:
                raise Bad("SASL response too long") from None
            if line is None:
                self.done = True
                return
            response = line.decode("utf-8", "replace")
            if response == "*":
                raise Bad("authentication cancelled")
        try:
            authzid, authcid, password = decode_plain(response)
        except ValueError as exc:
            raise Bad(str(exc)) from None
        if authzid and authzid.lower() != authcid.lower():
            await self.wire.reply("-ERR [AUTH] the authorization identity must be empty or "
                                  "the address itself")
            return
        await self._login(authcid, password)

    async def _login(self, user: str, password: str) -> None:
        try:
            self.login = await self.listener.checker.login(self.ip, user, password)
        except TooManyFailures as exc:
            await self.wire.reply(f"-ERR [SYS/TEMP] too many failed logins, try again in "
                                  f"{max(1, round(exc.retry_after))} s")
            self.done = True
            return
        except LoginFailed:
            await self.wire.reply(BAD_LOGIN)
            return
        except StorageUnavailable:
            await self.wire.reply(UNAVAILABLE)
            return
        self.logged_in()
        await self.wire.reply(f"+OK {self.login.inbox} {self.login.maildrop.summary()}")

    async def cmd_stls(self, args: list[str], _: str) -> None:
        """RFC 2595 §4: upgrade to TLS; pipelined plaintext after STLS is discarded."""
        context = self.listener.tls
        if context is None or self.tls:
            raise Bad("STLS is not available" if context is None else "TLS is already active")
        await self.wire.reply("+OK begin TLS negotiation")
        if self.wire.discard_buffered():
            log.info("POP3 client %s pipelined data after STLS: discarded", self.ip)
        try:
            await self.wire.writer.start_tls(
                context, ssl_handshake_timeout=max(0.1, min(30.0, self.wire.remaining())))
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.info("POP3 TLS handshake with %s failed: %s", self.ip, exc)
            self.done = True
            return
        self.tls = True
        self.user = None  # RFC 2595 §4: forget what the client said in plaintext

    async def cmd_apop(self, args: list[str], _: str) -> None:
        raise Bad("APOP is not supported: use USER/PASS or AUTH PLAIN with an API key")
