"""SMTP AUTH credentials (Email Capture): an account name or owned address, and an API key.

* The **password** is any non-revoked API key of the account, resolved by
  :meth:`KeyAuthenticator.authenticate` (the hash lookup the HTTP API uses, with its short
  cache; revoking through the admin API or CLI takes effect at once in this process).
* The **user name** is the key's account id (``_id`` in ``GET /api/me``), or an address
  the account owns: a reserved address or one in a domain it owns (``+tag`` and case do
  not matter). It is compared after the key is found, in constant time.

Every failure raises the same :class:`BadCredentials`, whatever was wrong. Delaying and
limiting failures per client is the listener's part (:mod:`mailsac.smtp.auth` with
:class:`mailsac.listeners.logins.LoginFailures`, as POP3 does); nothing here logs a user
name or a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from mailsac.access import KeyAuthenticator
from mailsac.errors import InvalidAddress, Unauthorized
from mailsac.policy import normalize_inbox

MAX_USERNAME = 320  # an RFC 5321 path: 64 + 1 + 255


class BadCredentials(Exception):
    """Unknown or revoked key, or a user name the key's account does not own."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who authenticated: the account, and the name of the key used."""

    account_id: str
    key_name: str


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.casefold().encode("utf-8"), b.casefold().encode("utf-8"))


class Credentials:
    """Checks a user name and API key pair; see the module docstring for the rules."""

    def __init__(self, auth: KeyAuthenticator,
                 owner_of_inbox: Callable[[str], str | None]) -> None:
        self._auth = auth
        self._owner_of_inbox = owner_of_inbox

    def owns(self, account_id: str, username: str) -> bool:
        """``username`` names ``account_id``: its id, or an address it owns."""
        if _same(account_id, username):
            return True
        if "@" not in username:
            return False
        try:
            inbox = normalize_inbox(username)
        except InvalidAddress:
            return False
        owner = self._owner_of_inbox(inbox)
        return owner is not None and _same(owner, account_id)

    async def verify(self, username: str, password: str) -> Identity:
        """The identity behind the pair. Raises :class:`BadCredentials`, or
        :class:`~mailsac.errors.StorageUnavailable` when keys cannot be looked up."""
        try:
            if not username or len(username) > MAX_USERNAME:
                raise Unauthorized("invalid user name")
            key = await self._auth.authenticate(password)
            if not self.owns(key.account_id, username):
                raise Unauthorized("the user name does not name the key's account")
        except Unauthorized:
            raise BadCredentials from None
        return Identity(key.account_id, key.name)
