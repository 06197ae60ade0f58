"""Operator actions shared by the CLI and the admin HTTP API: accounts, users, keys, domains.

Scope: the CLI and admin keys of the operator account (:data:`ADMIN_ACCOUNT`, whose key is
printed at first start or set with ``MAILSAC_ADMIN_KEY``) manage every account. An admin
key of any other account manages only its own account's users and keys; creating
accounts, giving domains to accounts (which makes existing public mail of the domain
private) and the global deny-list and counters are the operator's alone. Every other
attempt is a 403 saying so.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.access import KeyAuthenticator
from mailsac.addresses import Addresses
from mailsac.errors import Forbidden, InvalidRequest, NotFound
from mailsac.storage import accounts as account_store
from mailsac.storage import keys as key_store
from mailsac.storage.accounts import ADMIN_ACCOUNT, Account, User
from mailsac.storage.db import connect
from mailsac.storage.directory import DomainRecord
from mailsac.storage.keys import ApiKey

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def check_name(kind: str, value: str) -> str:
    value = value.strip().lower()
    if not _NAME_RE.fullmatch(value):
        raise InvalidRequest(f"{kind} must be 1-63 characters of a-z, 0-9, '.', '_', '-'")
    return value


def is_operator(actor: ApiKey | None) -> bool:
    """The CLI (``None``) or an admin key of the operator account."""
    return actor is None or (actor.is_admin and actor.account_id == ADMIN_ACCOUNT)


def require_operator(actor: ApiKey | None, action: str) -> None:
    if not is_operator(actor):
        raise Forbidden(f"Only an operator key (an admin key of the account "
                        f"'{ADMIN_ACCOUNT}') may {action}")


def require_scope(actor: ApiKey | None, account_id: str) -> None:
    """An account admin may manage only its own account (403 otherwise)."""
    if actor is not None and not is_operator(actor) and actor.account_id != account_id:
        raise Forbidden(f"An admin key of account '{actor.account_id}' may manage only that "
                        f"account; other accounts need an operator key")


class Admin:
    """Account, user, key and domain management (admin keys / the CLI only)."""

    def __init__(self, engine: AsyncEngine, addresses: Addresses,
                 auth: KeyAuthenticator | None = None) -> None:
        self._engine = engine
        self._addresses = addresses
        self._auth = auth

    async def create_account(
        self, account_id: str, *, email: str | None = None, message_limit: int | None = None,
        credits: int | None = None, actor: ApiKey | None = None,
    ) -> Account:
        require_operator(actor, "create accounts")
        account_id = check_name("account id", account_id)
        async with connect(self._engine, write=True) as conn:
            account = await account_store.create_account(
                conn, account_id, email=email, message_limit=message_limit,
                private_address_credits=credits)
        if account is None:
            raise InvalidRequest(f"account {account_id} already exists")
        return account

    async def accounts(self, actor: ApiKey | None = None) -> list[Account]:
        """Every account for the operator; an account admin sees only its own."""
        async with connect(self._engine) as conn:
            if is_operator(actor):
                return await account_store.list_accounts(conn)
            assert actor is not None
            own = await account_store.get_account(conn, actor.account_id)
            return [own] if own is not None else []

    async def _require_account(self, conn: Any, account_id: str) -> None:
        if await account_store.get_account(conn, account_id) is None:
            raise NotFound(f"no account {account_id}")

    async def add_user(self, account_id: str, username: str, email: str | None = None,
                       actor: ApiKey | None = None) -> User:
        require_scope(actor, account_id)
        username = check_name("username", username)
        async with connect(self._engine, write=True) as conn:
            await self._require_account(conn, account_id)
            user = await account_store.add_user(conn, account_id, username, email)
        if user is None:
            raise InvalidRequest(f"username {username} is taken")
        return user

    async def users(self, account_id: str, actor: ApiKey | None = None) -> list[User]:
        require_scope(actor, account_id)
        async with connect(self._engine) as conn:
            await self._require_account(conn, account_id)
            return await account_store.list_users(conn, account_id)

    async def create_key(
        self, account_id: str, name: str, *, is_admin: bool = False, username: str | None = None,
        actor: ApiKey | None = None,
    ) -> tuple[ApiKey, str]:
        require_scope(actor, account_id)
        if not name.strip() or len(name) > 100:
            raise InvalidRequest("a key needs a name of 1-100 characters")
        async with connect(self._engine, write=True) as conn:
            await self._require_account(conn, account_id)
            user_id = None
            if username:
                user = await account_store.get_user(conn, username)
                if user is None or user.account_id != account_id:
                    raise NotFound(f"no user {username} in account {account_id}")
                user_id = user.id
            return await key_store.create_key(conn, name.strip(), account_id=account_id,
                                              is_admin=is_admin, user_id=user_id)

    async def keys(self, account_id: str | None = None,
                   actor: ApiKey | None = None) -> list[ApiKey]:
        if account_id is None:
            require_operator(actor, "list the keys of every account")
        else:
            require_scope(actor, account_id)
        async with connect(self._engine) as conn:
            if account_id is not None:
                await self._require_account(conn, account_id)
            return await key_store.list_keys(conn, account_id)

    async def revoke_key(self, key_id: int, actor: ApiKey | None = None) -> None:
        """Revoke a key; an account admin only its own account's (others: 404)."""
        scope = None if is_operator(actor) or actor is None else actor.account_id
        async with connect(self._engine, write=True) as conn:
            revoked = await key_store.revoke_key(conn, key_id, scope)
        if not revoked:
            raise NotFound(f"no active key with id {key_id}")
        if self._auth is not None:
            self._auth.forget()

    async def add_domain(self, domain: str, account_id: str, catch_all: bool,
                         actor: ApiKey | None = None) -> DomainRecord:
        # Claiming a domain makes everyone's public mail of it private to the claimer.
        require_operator(actor, "give domains to accounts")
        return await self._addresses.add_domain(domain, account_id, catch_all)
