"""POP3 credentials: the user is an inbox address, the password an API key that may read it.

The rules are the HTTP API's, not a copy of them: the key is resolved by
:meth:`KeyAuthenticator.authenticate` and the maildrop is listed with
:meth:`Mailboxes.list_messages`, which applies :class:`~mailsac.visibility.Visibility`
(a public inbox opens with any valid key, a reserved address or owned domain only with
its account's keys) and returns only the messages that key may see.

Failures are answered alike (unknown key, revoked key, another account's inbox), after
``delay`` seconds (RFC 1939 §13 suggests slowing down guessing), and counted per client
(IPv4 address or IPv6 /64) and per network by :class:`mailsac.listeners.logins.LoginFailures`,
the limiter SMTP AUTH uses too; over the limit, every login from there is refused until old
failures expire.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsac.access import KeyAuthenticator
from mailsac.errors import Forbidden, InvalidAddress, Unauthorized
from mailsac.listeners.logins import LoginFailures, TooManyFailures, decode_plain, failure_key
from mailsac.mailbox import Mailboxes
from mailsac.policy import normalize_inbox
from mailsac.pop3.maildrop import Maildrop
from mailsac.storage.keys import ApiKey
from mailsac.throttle import Counter
from mailsac.timeutil import sleep_at_least

__all__ = ["Login", "LoginChecker", "LoginFailed", "TooManyFailures", "decode_plain",
           "failure_key"]

MAX_MESSAGES = 10_000
"""Newest messages a maildrop holds (older ones are reachable over HTTP)."""


class LoginFailed(Exception):
    """Wrong address/key pair, or a key that may not read that inbox."""


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: who, which inbox, and the maildrop frozen at that moment."""

    key: ApiKey
    inbox: str
    maildrop: Maildrop


class LoginChecker:
    """Checks POP3 credentials with the API's rules; limits failures per client and network."""

    def __init__(
        self, auth: KeyAuthenticator, mailboxes: Mailboxes, *, delay: float = 1.0,
        max_failures: int = 10, window: float = 600.0, max_messages: int = MAX_MESSAGES,
        counter: Counter | None = None,
    ) -> None:
        self._auth = auth
        self._mailboxes = mailboxes
        self.delay = delay
        self.max_messages = max_messages
        self.failures = LoginFailures("pop3", max_failures=max_failures, window=window,
                                      counter=counter)

    @staticmethod
    def inbox_of(user: str) -> str:
        """The inbox a user name stands for (raises :class:`InvalidAddress`)."""
        return normalize_inbox(user)

    def check_allowed(self, ip: str) -> None:
        """Raise :class:`TooManyFailures` while ``ip`` is over its failure limit."""
        self.failures.check(ip)

    async def login(self, ip: str, user: str, password: str) -> Login:
        """Authenticate and snapshot the maildrop.

        Raises :class:`TooManyFailures`, :class:`LoginFailed` (after the delay) or
        :class:`~mailsac.errors.StorageUnavailable` (not counted as a failure).
        """
        self.check_allowed(ip)
        try:
            inbox = normalize_inbox(user)
            key = await self._auth.authenticate(password)
            newest_first = await self._mailboxes.list_messages(
                key, inbox, limit=self.max_messages, light=True)  # ids and sizes suffice
        except (InvalidAddress, Unauthorized, Forbidden) as exc:
            self.failures.failed(ip)
            await sleep_at_least(self.delay)
            raise LoginFailed(str(exc)) from exc
        return Login(key, inbox, Maildrop(newest_first[::-1]))
