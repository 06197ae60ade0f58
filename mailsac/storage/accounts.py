"""Accounts and their users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import accounts, users

ADMIN_ACCOUNT = "admin"
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True, slots=True)
class Account:
    """A customer of the service: owns addresses, domains, users and keys."""

    id: str
    email: str | None
    message_limit: int
    private_address_credits: int
    created_at: datetime
    capture_private: bool = False  # captured (SMTP AUTH) mail is starred for the account


@dataclass(frozen=True, slots=True)
class User:
    id: int
    account_id: str
    username: str
    email: str | None
    created_at: datetime


_ACCOUNT_COLS = accounts.c["id", "email", "message_limit", "private_address_credits",
                           "created_at", "capture_private"]
_USER_COLS = users.c["id", "account_id", "username", "email", "created_at"]


async def create_account(
    conn: AsyncConnection, account_id: str, *, email: str | None = None,
    message_limit: int | None = None, private_address_credits: int | None = None,
) -> Account | None:
    """Create the account; None if the id is taken."""
    values: dict[str, object] = {"id": account_id, "email": email}
    if message_limit is not None:
        values["message_limit"] = message_limit
    if private_address_credits is not None:
        values["private_address_credits"] = private_address_credits
    row = (await conn.execute(
        insert(accounts).values(**values).on_conflict_do_nothing().returning(*_ACCOUNT_COLS)
    )).first()
    return Account(*row) if row else None


async def ensure_account(conn: AsyncConnection, account_id: str) -> None:
    await conn.execute(insert(accounts).values(id=account_id).on_conflict_do_nothing())


async def get_account(conn: AsyncConnection, account_id: str) -> Account | None:
    row = (await conn.execute(
        select(*_ACCOUNT_COLS).where(accounts.c.id == account_id))).first()
    return Account(*row) if row else None


async def set_capture_private(
    conn: AsyncConnection, account_id: str, capture_private: bool
) -> Account | None:
    """Turn Email Capture's private mode on or off; None if there is no such account."""
    row = (await conn.execute(
        update(accounts).where(accounts.c.id == account_id)
        .values(capture_private=capture_private).returning(*_ACCOUNT_COLS))).first()
    return Account(*row) if row else None


async def list_accounts(conn: AsyncConnection) -> list[Account]:
    return [Account(*r) for r in await conn.execute(select(*_ACCOUNT_COLS).order_by(accounts.c.id))]


async def add_user(
    conn: AsyncConnection, account_id: str, username: str, email: str | None = None
) -> User | None:
    """Add a user to an account; None if the username is taken."""
    row = (await conn.execute(
        insert(users).values(account_id=account_id, username=username, email=email)
        .on_conflict_do_nothing().returning(*_USER_COLS)
    )).first()
    return User(*row) if row else None


async def list_users(conn: AsyncConnection, account_id: str) -> list[User]:
    query = select(*_USER_COLS).where(users.c.account_id == account_id).order_by(users.c.id)
    return [User(*r) for r in await conn.execute(query)]


async def get_user(conn: AsyncConnection, username: str) -> User | None:
    row = (await conn.execute(select(*_USER_COLS).where(users.c.username == username))).first()
    return User(*row) if row else None
