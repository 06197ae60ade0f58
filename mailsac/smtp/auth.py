"""SMTP AUTH (RFC 4954): the PLAIN and LOGIN mechanisms, over TLS, with account API keys.

aiosmtpd parses ``AUTH`` and calls ``handler.auth_<MECHANISM>(server, args)``; the handler
delegates to :class:`SmtpAuth`, which reads the SASL exchange, checks the pair with
:class:`mailsac.credentials.Credentials` and records the outcome on the session
(``session.auth_data`` = :class:`SmtpIdentity`). Replies:

* ``235 2.7.0`` authenticated: the session is an Email Capture session of that account.
* ``535 5.7.8`` bad credentials (unknown or revoked key, or a user name that is not the
  key's account or one of its addresses), always after ``delay`` seconds; failures are
  counted per client and network (:class:`~mailsac.listeners.logins.LoginFailures`, the
  POP3 limiter), and over the limit ``454 4.7.0`` answers at once, nothing checked.
* ``538 5.7.11`` credentials on a plaintext connection (unless ``plaintext`` allows it),
  ``454 4.7.0`` storage down, ``554 5.7.1`` deny-listed client, ``501`` malformed SASL,
  ``503 5.5.1`` AUTH inside a mail transaction.

AUTH is offered in EHLO only where it may be used: under TLS (STARTTLS or SMTPS), or
without TLS when ``plaintext`` is ``"always"``, or ``"loopback"`` and the client is on
loopback (``MAILSAC_SMTP_AUTH_PLAINTEXT``). With ``accept_any``
(``MAILSAC_SMTP_AUTH_ACCEPT_ANY``) credentials that are not valid still get ``235`` but
authenticate nobody: the session stays anonymous (routing, limits, no ``ESMTPA``). Valid
credentials still make a capture session, and the capture port never accepts any.

CRAM-MD5 is not offered: it needs the server to know the plain password (the key), and
keys are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, Session

from mailsac.credentials import BadCredentials, Credentials
from mailsac.errors import StorageUnavailable
from mailsac.listeners.logins import LoginFailures, TooManyFailures, is_loopback, split_plain
from mailsac.smtp import replies
from mailsac.timeutil import sleep_at_least

if TYPE_CHECKING:
    from mailsac.access import KeyAuthenticator
    from mailsac.config import Settings
    from mailsac.gate import SenderGate

log = logging.getLogger(__name__)

PLAINTEXT_MODES = ("never", "loopback", "always")
HANDLED = AuthResult(success=False, handled=True)
"""What the mechanisms return: they send every reply themselves (see :meth:`_accept`)."""

DenyCheck = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class SmtpIdentity:
    """Who an authenticated session is: an account, or nobody (accepted by accept-any)."""

    account_id: str | None


def peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else ""


def session_account(session: Session) -> str | None:
    """The account a session authenticated as (a capture session), else None."""
    data = session.auth_data
    if session.authenticated and isinstance(data, SmtpIdentity):
        return data.account_id
    return None


AUTH_OUTCOMES = ("accepted", "anonymous", "invalid", "throttled", "denied", "needs_tls",
                 "unavailable")
"""``accepted``: an account's credentials; ``anonymous``: accepted without an account
(``MAILSAC_SMTP_AUTH_ACCEPT_ANY``); ``invalid``: bad credentials; ``throttled``: too many
failures from the client; ``denied``: a deny-listed client; ``needs_tls``: AUTH before
STARTTLS; ``unavailable``: the database could not be asked."""


class SmtpAuth:
    """The AUTH policy and mechanisms of one SMTP service (main and capture ports)."""

    def __init__(
        self, credentials: Credentials, failures: LoginFailures, *, delay: float = 1.0,
        plaintext: str = "never", accept_any: bool = False, denied: DenyCheck | None = None,
    ) -> None:
        if plaintext not in PLAINTEXT_MODES:
            raise ValueError(f"plaintext must be one of {', '.join(PLAINTEXT_MODES)}")
        self.credentials = credentials
        self.failures = failures
        self.delay = delay
        self.plaintext = plaintext
        self.accept_any = accept_any
        self._denied = denied
        #: Login attempts by outcome, for ``/metrics`` (counts only: never names or keys).
        self.outcomes = dict.fromkeys(AUTH_OUTCOMES, 0)

    def offered(self, session: Session) -> bool:
        """Credentials may be sent on this connection now."""
        if session.ssl is not None or self.plaintext == "always":
            return True
        return self.plaintext == "loopback" and is_loopback(peer_ip(session))

    # -- mechanisms (called through MailsacHandler.auth_PLAIN / auth_LOGIN) ---------------

    async def plain(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616, with an initial response (``=`` is empty) or after a ``334``."""
        if not await self._may_start(server):
            return HANDLED
        if len(args) == 2:
            raw = await self._decode(server, args[1])
        else:
            raw = await self._challenge(server, "")
        if raw is None:
            return HANDLED
        try:
            authzid, username, password = split_plain(raw)
        except ValueError as exc:
            await server.push(str(replies.S501_AUTH_SYNTAX.with_text(f"Invalid PLAIN "
                                                                      f"response: {exc}")))
            return HANDLED
        if authzid and authzid.casefold() != username.casefold():
            await server.push(str(replies.S535_AUTH_INVALID.with_text(
                "Authentication credentials invalid: the authorization identity must be "
                "empty or the user name itself")))
            return HANDLED
        await self._login(server, username, password)
        return HANDLED

    async def login(self, server: SMTP, args: list[str]) -> AuthResult:
        """The LOGIN mechanism: user name (initial response or ``334``), then password."""
        if not await self._may_start(server):
            return HANDLED
        if len(args) == 2:
            user = await self._decode(server, args[1])
        else:
            user = await self._challenge(server, "Username:")
        if user is None:
            return HANDLED
        password = await self._challenge(server, "Password:")
        if password is None:
            return HANDLED
        try:
            username, secret = user.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            await server.push(str(replies.S501_AUTH_SYNTAX.with_text(
                "Invalid LOGIN response: not UTF-8 text")))
            return HANDLED
        await self._login(server, username, secret)
        return HANDLED

    # -- steps ------------------------------------------------------------------------------

    async def _may_start(self, server: SMTP) -> bool:
        session = server.session
        assert session is not None
        envelope = server.envelope
        if envelope is not None and envelope.mail_from is not None:
            await server.push("503 5.5.1 AUTH is not permitted during a mail transaction "
                              "(RFC 4954 section 4): RSET first")
            return False
        if not self.offered(session):
            self.outcomes["needs_tls"] += 1
            await server.push(str(replies.S538_AUTH_NEEDS_TLS))
            return False
        return True

    @staticmethod
    async def _decode(server: SMTP, text: str) -> bytes | None:
        """An initial response (RFC 4954 §4: ``=`` stands for an empty one)."""
        if text == "=":
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            await server.push(str(replies.S501_AUTH_SYNTAX.with_text(
                "Invalid authentication response: not base64")))
            return None

    @staticmethod
    async def _challenge(server: SMTP, prompt: str) -> bytes | None:
        """Send ``334 <base64 prompt>`` and read the answer (None: cancelled or invalid;
        aiosmtpd answered ``*`` and bad base64 already)."""
        try:
            answer = await server.challenge_auth(prompt)
        except ValueError:  # longer than the reader's line limit: the line was dropped
            await server.push(str(replies.S500_AUTH_LINE_TOO_LONG))
            return None
        return answer if isinstance(answer, bytes) else None  # MISSING: already answered

    async def _login(self, server: SMTP, username: str, password: str) -> None:
        session = server.session
        assert session is not None
        ip = peer_ip(session)
        reason = self._denied(ip) if self._denied is not None else None
        if reason is not None:
            self.outcomes["denied"] += 1
            await server.push(str(replies.S554_DENIED.with_text(
                f"Connections from {ip} are refused: {reason}")))
            return
        accept_any = self.accept_any and not getattr(server, "require_auth", False)
        try:
            self.failures.check(ip)
            identity = await self.credentials.verify(username, password)
        except TooManyFailures as exc:
            if accept_any:  # the credentials are not even checked any more
                await self._accept(server, None)
                return
            self.outcomes["throttled"] += 1
            wait = max(1, math.ceil(exc.retry_after))
            await server.push(str(replies.S454_AUTH_TOO_MANY.with_text(
                f"Too many failed authentication attempts from {ip}; try again in {wait} s")))
            return
        except BadCredentials:
            self.failures.failed(ip)
            log.info("SMTP AUTH failed for a client at %s", ip)  # never the user name or key
            if accept_any:
                await self._accept(server, None)
                return
            self.outcomes["invalid"] += 1
            await sleep_at_least(self.delay)
            await server.push(str(replies.S535_AUTH_INVALID))
            return
        except StorageUnavailable:
            self.outcomes["unavailable"] += 1
            await server.push(str(replies.S454_AUTH_TEMPORARY))
            return
        await self._accept(server, identity.account_id)

    async def _accept(self, server: SMTP, account_id: str | None) -> None:
        """Record the outcome and send 235 ourselves: returning ``success=True`` would make
        aiosmtpd set its deprecated ``login_data``, which logs a warning every time."""
        self.outcomes["anonymous" if account_id is None else "accepted"] += 1
        session = server.session
        assert session is not None
        session.authenticated = True
        session.auth_data = SmtpIdentity(account_id)  # type: ignore[assignment]
        if account_id is None:
            await server.push(str(replies.S235_AUTH_ANONYMOUS))
            return
        await server.push(str(replies.S235_AUTH_OK.with_text(
            f"Authentication successful: this session's mail is captured for account "
            f"{account_id}")))


def build_auth(settings: Settings, keys: KeyAuthenticator,
               owner_of_inbox: Callable[[str], str | None],
               gate: SenderGate | None = None) -> SmtpAuth:
    """The AUTH service from settings (called by the composition root). ``gate`` supplies
    the deny-list (current after reloads)."""

    def denied(ip: str) -> str | None:
        entry = gate.deny.match_ip(ip) if gate is not None else None
        return None if entry is None else (entry.reason or "deny-listed")

    failures = LoginFailures("smtp", max_failures=settings.smtp_auth_failures,
                             window=settings.smtp_auth_window)
    return SmtpAuth(Credentials(keys, owner_of_inbox), failures,
                    delay=settings.smtp_auth_delay, plaintext=settings.smtp_auth_plaintext,
                    accept_any=settings.smtp_auth_accept_any, denied=denied)
