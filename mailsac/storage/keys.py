"""API keys: generated once, shown once, stored as sha256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mailsac.storage.models import api_keys

_ALPHABET = string.ascii_lowercase + string.digits
KEY_PREFIX = "k_"


def generate_key() -> str:
    """``k_`` + 26 random [a-z0-9] characters (134 bits), Mailsac's key format."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(26))


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its plain text). Admin keys may also use the admin API."""

    id: int
    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    account_id: str
    user_id: int | None
    is_admin: bool


_COLS = api_keys.c[
    "id", "name", "key_prefix", "created_at", "revoked_at", "account_id", "user_id", "is_admin"
]


async def create_key(
    conn: AsyncConnection, name: str, key: str | None = None, *, account_id: str = "default",
    is_admin: bool = False, user_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (or the given one) and return it with its plain text."""
    plain = key or generate_key()
    row = (
        await conn.execute(
            api_keys.insert()
            .values(name=name, key_hash=hash_key(plain), key_prefix=plain[:6],
                    account_id=account_id, is_admin=is_admin, user_id=user_id)
            .returning(*_COLS)
        )
    ).one()
    return ApiKey(*row), plain


async def ensure_key(
    conn: AsyncConnection, name: str, key: str, *, account_id: str, is_admin: bool
) -> None:
    """Register ``key`` unless it is already known (used for ``MAILSAC_ADMIN_KEY``)."""
    found = await conn.execute(select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key)))
    if found.first() is None:
        await create_key(conn, name, key, account_id=account_id, is_admin=is_admin)


async def any_keys(conn: AsyncConnection) -> bool:
    return (await conn.execute(select(api_keys.c.id).limit(1))).first() is not None


async def find_active_key(conn: AsyncConnection, key: str) -> ApiKey | None:
    query = select(*_COLS).where(
        api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
    )
    row = (await conn.execute(query)).first()
    return ApiKey(*row) if row else None


async def list_keys(conn: AsyncConnection, account_id: str | None = None) -> list[ApiKey]:
    query = select(*_COLS).order_by(api_keys.c.id)
    if account_id is not None:
        query = query.where(api_keys.c.account_id == account_id)
    return [ApiKey(*row) for row in await conn.execute(query)]


async def revoke_key(conn: AsyncConnection, key_id: int, account_id: str | None = None) -> bool:
    query = update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if account_id is not None:
        query = query.where(api_keys.c.account_id == account_id)
    result = await conn.execute(query.values(revoked_at=datetime.now().astimezone()))
    return bool(result.rowcount)
