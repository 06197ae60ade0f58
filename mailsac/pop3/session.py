"""One POP3 conversation: the RFC 1939 §3 state machine and its commands.

AUTHORIZATION (:mod:`mailsac.pop3.authorization`: ``USER``/``PASS``, ``AUTH PLAIN``, ``STLS``)
→ TRANSACTION (``STAT LIST RETR DELE NOOP RSET TOP UIDL``) → UPDATE (after ``QUIT``:
marked messages are deleted through :meth:`Mailboxes.delete`, the API's code path, so hub
events fire and caches are updated). ``CAPA`` (RFC 2449 §5) and ``QUIT`` work in both
states. A session that ends any other way (timeout, disconnect, shutdown) never enters
UPDATE and deletes nothing (RFC 1939 §6). A session must log in within
``login_timeout`` seconds of connecting and ends after ``max_session_seconds`` in any case
(with ``-ERR`` and a reason), so no client can hold a slot for hours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailsac.errors import MailsacError, MessageNotFound, StorageUnavailable
from mailsac.mailbox import Mailboxes
from mailsac.pop3.authorization import UNAVAILABLE, AuthorizationCommands
from mailsac.pop3.login import Login
from mailsac.pop3.maildrop import Entry, NoSuchMessage
from mailsac.pop3.wire import Bad, LineTooLong, Wire, top_end

if TYPE_CHECKING:
    from mailsac.pop3.server import Pop3Listener

log = logging.getLogger(__name__)

MAX_BAD_COMMANDS = 10
SHUTTING_DOWN = "-ERR [SYS/TEMP] mailsac is shutting down, try again later"


@dataclass(frozen=True, slots=True)
class _Command:
    handler: Callable[[Pop3Session, list[str], str], Awaitable[None]]
    authorization: bool  # allowed before login
    transaction: bool  # allowed after login


class Pop3Session(AuthorizationCommands):
    """Runs one client's commands in order (pipelining works: RFC 2449 §6.6)."""

    def __init__(self, wire: Wire, ip: str, listener: Pop3Listener) -> None:
        self.wire = wire
        self.ip = ip
        self.listener = listener
        self.user: str | None = None
        self.login: Login | None = None
        self.tls = False
        self.busy = False  # running a command: shutdown lets it finish
        self.done = False
        self.bad_commands = 0
        self.expires = float("inf")

    def logged_in(self) -> None:
        """After login: the session may live until its absolute lifetime ends."""
        self.wire.deadline = self.expires
        self.listener.logged_in(self)

    @property
    def mailboxes(self) -> Mailboxes:
        return self.listener.mailboxes

    async def run(self) -> None:
        now = asyncio.get_running_loop().time()  # the clocks start with the greeting
        self.expires = now + self.listener.max_session_seconds
        self.wire.deadline = min(now + self.listener.login_timeout, self.expires)
        await self.wire.reply(f"+OK {self.listener.hostname} mailsac POP3 server ready")
        while not self.done:
            if self.wire.expired:
                await self._expired()
                return
            try:
                line = await self.wire.read_line()
            except LineTooLong:
                await self._bad("line too long")
                continue
            except TimeoutError:
                if self.wire.expired:
                    await self._expired()
                    return
                raise  # the idle autologout: close without a response (RFC 1939 §3)
            if line is None:
                return
            self.busy = True
            try:
                await self._dispatch(line)
            except Bad as exc:
                await self._bad(str(exc))
            finally:
                self.busy = False
            if self.listener.closing and not self.done:
                await self.wire.reply(SHUTTING_DOWN)
                return

    async def _expired(self) -> None:
        if self.login is None:
            await self.wire.reply(f"-ERR login timeout: log in within "
                                  f"{self.listener.login_timeout:g} s of connecting")
        else:
            await self.wire.reply("-ERR [SYS/TEMP] session time limit reached "
                                  f"({self.listener.max_session_seconds:g} s), log in again")

    async def _bad(self, reason: str) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            await self.wire.reply(f"-ERR {reason}; too many bad commands, closing connection")
            self.done = True
        else:
            await self.wire.reply(f"-ERR {reason}")

    async def _dispatch(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("command is not valid UTF-8") from None
        keyword, _, rest = text.partition(" ")
        command = COMMANDS.get(keyword.upper())
        if command is None:
            raise Bad(f"unknown command {keyword[:20]!r}" if keyword else "empty command")
        allowed = command.transaction if self.login else command.authorization
        if not allowed:
            state = "TRANSACTION" if self.login else "AUTHORIZATION"
            raise Bad(f"{keyword.upper()} is not valid in the {state} state")
        await command.handler(self, rest.split(), rest)

    # -- any state ---------------------------------------------------------------------

    async def cmd_capa(self, args: list[str], _: str) -> None:
        """RFC 2449 §5; STLS (RFC 2595 §4) only while it can still be used."""
        caps = ["TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"]
        if self.login is None:
            if self.may_login:  # never offer credentials in plaintext when TLS exists
                caps[:0] = ["USER", "SASL PLAIN"]
            if self.listener.tls is not None and not self.tls:
                caps.append("STLS")
        caps.append("IMPLEMENTATION mailsac")
        await self.wire.multiline("+OK capability list follows", caps)

    async def cmd_quit(self, args: list[str], _: str) -> None:
        self.done = True
        if self.login is None:
            await self.wire.reply("+OK mailsac POP3 server signing off")
            return
        await self._update(self.login)

    async def _update(self, login: Login) -> None:
        """RFC 1939 §6: remove the marked messages, then say goodbye."""
        failed, temporary = 0, False
        for entry in login.maildrop.marked:
            try:
                await self.mailboxes.delete(login.key, login.inbox, entry.uid)
            except MessageNotFound:
                pass  # already gone (deleted over HTTP or recycled): the goal is met
            except MailsacError as exc:  # unavailable storage, or access lost meanwhile
                failed += 1
                temporary = temporary or isinstance(exc, StorageUnavailable)
                log.warning("POP3 could not delete %s from %s: %s", entry.uid, login.inbox, exc)
        left = login.maildrop.count
        if failed:
            code = "[SYS/TEMP] " if temporary else ""
            await self.wire.reply(f"-ERR {code}some deleted messages not removed ({failed} kept)")
        else:
            await self.wire.reply(
                f"+OK mailsac POP3 server signing off ({left} messages left)")

    # -- TRANSACTION -------------------------------------------------------------------

    def _drop(self) -> Login:
        assert self.login is not None
        return self.login

    def _entry(self, args: list[str], count: int = 1) -> Entry:
        if len(args) != count:
            raise Bad("syntax: message number expected" if count == 1
                      else "syntax: TOP msg lines")
        try:
            return self._drop().maildrop.lookup(args[0])
        except NoSuchMessage as exc:
            raise Bad(str(exc)) from None

    async def cmd_stat(self, args: list[str], _: str) -> None:
        drop = self._drop().maildrop
        await self.wire.reply(f"+OK {drop.count} {drop.octets}")

    async def cmd_list(self, args: list[str], _: str) -> None:
        if args:
            entry = self._entry(args)
            await self.wire.reply(f"+OK {entry.number} {entry.size}")
            return
        drop = self._drop().maildrop
        await self.wire.multiline(f"+OK {drop.count} messages ({drop.octets} octets)",
                                  [f"{e.number} {e.size}" for e in drop.live])

    async def cmd_uidl(self, args: list[str], _: str) -> None:
        if args:
            entry = self._entry(args)
            await self.wire.reply(f"+OK {entry.number} {entry.uid}")
            return
        await self.wire.multiline("+OK unique-id listing follows",
                                  [f"{e.number} {e.uid}" for e in self._drop().maildrop.live])

    async def _raw(self, entry: Entry) -> bytes | None:
        """The stored bytes, re-checked against the API rules (it may be gone by now)."""
        login = self._drop()
        try:
            record = await self.mailboxes.get(login.key, login.inbox, entry.uid)
            return await self.mailboxes.raw(record)
        except StorageUnavailable:
            await self.wire.reply(UNAVAILABLE)
        except MailsacError:  # deleted elsewhere, recycled, or no longer visible
            await self.wire.reply(f"-ERR message {entry.number} is no longer available")
        return None

    async def cmd_retr(self, args: list[str], _: str) -> None:
        entry = self._entry(args)
        raw = await self._raw(entry)
        if raw is not None:
            await self.wire.message(f"+OK {len(raw)} octets", raw)

    async def cmd_top(self, args: list[str], _: str) -> None:
        """RFC 1939 §7 TOP: the header, the blank line, then ``n`` body lines."""
        entry = self._entry(args, 2)
        if not args[1].isascii() or not args[1].isdigit():
            raise Bad("syntax: TOP msg lines (lines is a non-negative number)")
        raw = await self._raw(entry)
        if raw is not None:
            await self.wire.message("+OK top of message follows", raw,
                                    top_end(raw, int(args[1])))

    async def cmd_dele(self, args: list[str], _: str) -> None:
        entry = self._entry(args)
        entry.deleted = True
        await self.wire.reply(f"+OK message {entry.number} deleted")

    async def cmd_rset(self, args: list[str], _: str) -> None:
        drop = self._drop().maildrop
        drop.reset()
        await self.wire.reply(f"+OK {drop.summary()}")

    async def cmd_noop(self, args: list[str], _: str) -> None:
        await self.wire.reply("+OK")


COMMANDS: dict[str, _Command] = {
    "CAPA": _Command(Pop3Session.cmd_capa, True, True),
    "QUIT": _Command(Pop3Session.cmd_quit, True, True),
    "USER": _Command(Pop3Session.cmd_user, True, False),
    "PASS": _Command(Pop3Session.cmd_pass, True, False),
    "AUTH": _Command(Pop3Session.cmd_auth, True, False),
    "STLS": _Command(Pop3Session.cmd_stls, True, False),
    "APOP": _Command(Pop3Session.cmd_apop, True, False),
    "STAT": _Command(Pop3Session.cmd_stat, False, True),
    "LIST": _Command(Pop3Session.cmd_list, False, True),
    "UIDL": _Command(Pop3Session.cmd_uidl, False, True),
    "RETR": _Command(Pop3Session.cmd_retr, False, True),
    "TOP": _Command(Pop3Session.cmd_top, False, True),
    "DELE": _Command(Pop3Session.cmd_dele, False, True),
    "RSET": _Command(Pop3Session.cmd_rset, False, True),
    "NOOP": _Command(Pop3Session.cmd_noop, False, True),
}
