"""POP3 credentials: the user is an inbox address, the password an API key that may read it.

The rules are the HTTP API's, not a copy of them: the key is resolved by
:meth:`KeyAuthenticator.authenticate` and the maildrop is listed with
:meth:`Mailboxes.list_messages`, which applies :class:`~mailsac.visibility.Visibility`
(a public inbox opens with any valid key, a reserved address or owned domain only with
its account's keys) and returns only the messages that key may see.

Failures are answered alike (unknown key, revoked key, another account's inbox), after
``delay`` seconds (RFC 1939 §13 suggests slowing down guessing), and counted per client
IPv4 address or IPv6 /64 (one host usually owns a whole /64, so counting single IPv6
addresses would give it 2^64 allowances) in a :class:`mailsac.throttle.Counter` namespace
of their own; over the limit, every login from there is refused until old failures expire.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass

from mailsac.access import KeyAuthenticator
from mailsac.errors import Forbidden, InvalidAddress, Unauthorized
from mailsac.mailbox import Mailboxes
from mailsac.policy import normalize_inbox
from mailsac.pop3.maildrop import Maildrop
from mailsac.storage.keys import ApiKey
from mailsac.throttle import Counter, Limit, Limiter, ip_key, network_key

FAILURE_LIMIT = "pop3_auth_failures"
FAILURE_NAMESPACE = "pop3_auth_fail"
IPV6_FAILURE_PREFIX = 64
MAX_MESSAGES = 10_000
"""Newest messages a maildrop holds (older ones are reachable over HTTP)."""


class LoginFailed(Exception):
    """Wrong address/key pair, or a key that may not read that inbox."""


class TooManyFailures(Exception):
    """The client's IP used up its failed-login allowance."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: who, which inbox, and the maildrop frozen at that moment."""

    key: ApiKey
    inbox: str
    maildrop: Maildrop


def decode_plain(response: str) -> tuple[str, str, str]:
    """SASL PLAIN (RFC 4616 §2): base64 of ``authzid NUL authcid NUL passwd``."""
    try:
        raw = base64.b64decode(response.strip(), validate=True)
        parts = raw.decode("utf-8").split("\0")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("the PLAIN response is not valid base64 of UTF-8 text") from exc
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError("the PLAIN response needs authzid NUL authcid NUL password")
    return parts[0], parts[1], parts[2]


def failure_key(ip: str) -> str:
    """Where failed logins are counted: the IPv4 address, or the IPv6 address's /64."""
    key = ip_key(ip)
    if key is None:
        return ip
    if ":" in key:
        return network_key(key, v6_prefix=IPV6_FAILURE_PREFIX) or key
    return key


class LoginChecker:
    """Checks POP3 credentials with the API's rules; limits failures per IPv4 / IPv6 /64."""

    def __init__(
        self, auth: KeyAuthenticator, mailboxes: Mailboxes, *, delay: float = 1.0,
        max_failures: int = 10, window: float = 600.0, max_messages: int = MAX_MESSAGES,
        counter: Counter | None = None,
    ) -> None:
        self._auth = auth
        self._mailboxes = mailboxes
        self.delay = delay
        self.max_messages = max_messages
        self.limiter = Limiter(counter or Counter(max_entries=100_000), [Limit(
            FAILURE_LIMIT, FAILURE_NAMESPACE, max_failures, window,
            "Too many failed POP3 logins from {key}")])

    @staticmethod
    def inbox_of(user: str) -> str:
        """The inbox a user name stands for (raises :class:`InvalidAddress`)."""
        return normalize_inbox(user)

    def check_allowed(self, ip: str) -> None:
        """Raise :class:`TooManyFailures` while ``ip`` is over its failure limit."""
        decision = self.limiter.check(FAILURE_LIMIT, failure_key(ip))
        if not decision.allowed:
            raise TooManyFailures(decision.retry_after)

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
            self.limiter.hit(FAILURE_LIMIT, failure_key(ip))
            await asyncio.sleep(self.delay)
            raise LoginFailed(str(exc)) from exc
        return Login(key, inbox, Maildrop(newest_first[::-1]))
