"""Engine factory and database bootstrap (create the database, run migrations)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mailsac.errors import InvalidRequest, StorageUnavailable

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs and select the asyncpg driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_timeout=10,
        # Fail fast instead of hanging when the server is unreachable.
        connect_args={"timeout": 5, "command_timeout": 60},
    )


def asyncpg_dsn(url: str) -> str:
    """The same URL in the plain form asyncpg.connect() takes."""
    return make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(
        hide_password=False
    )


async def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist (needs a reachable server)."""
    target = make_url(normalize_url(url))
    name = target.database or "postgres"
    admin = target.set(database="postgres")
    conn = await asyncpg.connect(asyncpg_dsn(admin.render_as_string(hide_password=False)))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
    finally:
        await conn.close()


def migrations_dir() -> Path:
    """Alembic's script directory: shipped inside the wheel, or the repository's."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def run_migrations(url: str) -> None:
    """Upgrade the schema to the newest revision (synchronous; call outside the loop)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["database_url"] = normalize_url(url)
    command.upgrade(cfg, "head")


_DB_ERRORS = (OperationalError, InterfaceError, DBAPIError, OSError, TimeoutError)


def is_unavailable(exc: BaseException) -> bool:
    """True for "cannot reach / lost the database" errors (not for bugs such as bad SQL)."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError)):
        return True
    # Raw driver errors (the COPY in insert_messages bypasses SQLAlchemy's wrapping).
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                        asyncpg.CannotConnectNowError)):
        return True
    if isinstance(exc, DBAPIError):
        orig = getattr(exc, "orig", None)
        return exc.connection_invalidated or isinstance(
            orig, (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                   asyncpg.InterfaceError, asyncpg.CannotConnectNowError))
    return False


DB_TIMEOUT = 5.0  # an API call waits this long for the database, then answers 503


@asynccontextmanager
async def connect(engine: AsyncEngine, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection (a transaction when ``write``) whose failures become StorageUnavailable.

    The whole block is bounded by ``DB_TIMEOUT``: a paused or unreachable database makes
    callers fail fast (HTTP 503) instead of hanging.
    """
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            if write:
                async with engine.begin() as conn:
                    yield conn
            else:
                async with engine.connect() as conn:
                    yield conn
    except _DB_ERRORS as exc:
        if isinstance(getattr(exc, "orig", None), asyncpg.DataError) or isinstance(
                getattr(getattr(exc, "orig", None), "__cause__", None), asyncpg.DataError):
            # e.g. a NUL character in a search term: the input's fault, not the database's
            raise InvalidRequest("a value contains characters that cannot be stored or "
                                 "searched (such as NUL)") from exc
        if not is_unavailable(exc):
            raise
        raise StorageUnavailable("the database is unavailable") from exc
