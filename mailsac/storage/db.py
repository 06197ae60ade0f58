"""Engine factory and database bootstrap (create the database, run migrations)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mailsac.errors import InvalidRequest, StorageUnavailable
from mailsac.node import NODE_ID

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs and select the asyncpg driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


NODE_SETTING = "mailsac.node"
CLUSTER_SETTING = "mailsac.cluster"


def create_engine(url: str, pool_size: int = 10, *, connect_timeout: float = 5.0,
                  command_timeout: float = 60.0, cluster: str = "") -> AsyncEngine:
    """The pooled engine. ``connect_timeout`` bounds opening a connection (a hung server
    accepts the socket but never answers the start-up), ``command_timeout`` any single
    statement; callers bound their whole operation further (see :func:`connect`).
    ``cluster`` (``MAILSAC_CLUSTER``) tags this node's NOTIFYs with its service's name."""
    return create_async_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_timeout=DB_TIMEOUT,
        connect_args=connect_options(connect_timeout=connect_timeout,
                                     command_timeout=command_timeout, cluster=cluster),
    )


def connect_options(*, connect_timeout: float = 5.0, command_timeout: float = 60.0,
                    cluster: str = "") -> dict[str, Any]:
    """asyncpg's ``connect()`` keywords for this node's connections (see
    :func:`create_engine`; :class:`mailsac.storage.readpool.ReadPool` uses them too)."""
    # Fail fast instead of hanging when the server is unreachable.
    return {"timeout": connect_timeout, "command_timeout": command_timeout,
            # Tags this node's NOTIFYs (migration 0010's trigger reads it).
            "server_settings": {NODE_SETTING: NODE_ID, CLUSTER_SETTING: cluster}}


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


DB_TIMEOUT = 2.5
"""An API call's database work waits this long, then answers 503: with the clean-up of a
cancelled connection and the fail-fast of :func:`known_unavailable` for the request's
next step, a request stays within the 5 s the README promises."""


class LivenessProbe:
    """Pings the database on a connection of its own, so a *hung* server (frozen, or a
    network partition: nothing refuses, nothing answers) is noticed about as fast as a
    refused connection. While :attr:`alive` is False, :func:`connect` fails at once
    (HTTP 503 without waiting) and the metadata writer journals without trying.

    The probe never uses the pool: a pool full of stuck connections cannot blind it.
    """

    def __init__(self, engine: AsyncEngine, *, interval: float = 0.5,
                 timeout: float = 2.0) -> None:
        self._engine = engine
        self._dsn = asyncpg_dsn(engine.url.render_as_string(hide_password=False))
        self.interval = interval
        self.timeout = timeout
        self.alive = True
        self.failures = 0
        self.latency = 0.0
        """Seconds the last successful ping took."""
        self._conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()

    async def check(self) -> bool:
        """One ping (connecting first if needed); updates and returns :attr:`alive`."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
                await self._conn.fetchval("SELECT 1")
            self.latency = time.perf_counter() - started
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout, refused, lost: all mean "not answering"
            self._drop()
            if self.alive:
                log.error("database liveness probe failed (%s): treating the database as "
                          "unavailable", type(exc).__name__)
            self.alive = False
            self.failures += 1
            return False
        if not self.alive:
            log.warning("database answers again")
        self.alive = True
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()  # never waits for a hung server
            self._conn = None

    async def run(self) -> None:
        _probes[id(self._engine)] = self
        try:
            while True:
                self._wake.clear()
                await self.check()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
        finally:
            _probes.pop(id(self._engine), None)
            self._drop()

    def suspect(self) -> None:
        """A caller's database work timed out: ping again now rather than at the next tick.

        A timeout alone does not mark the database down: under a burst of requests it can
        be the wait for a pooled connection, while the server itself answers. The probe's
        own connection tells the two apart within its timeout.
        """
        self._wake.set()


_probes: dict[int, LivenessProbe] = {}


def liveness(engine: AsyncEngine) -> LivenessProbe | None:
    """The engine's running liveness probe, if any."""
    return _probes.get(id(engine))


def known_unavailable(engine: AsyncEngine) -> bool:
    """True while the engine's liveness probe (if one runs) says the database is down."""
    probe = _probes.get(id(engine))
    return probe is not None and not probe.alive


_readers: dict[int, AsyncEngine] = {}


def _reader(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) in autocommit mode, for reads.

    A read on a default connection costs three round trips: ``BEGIN``, the query, and the
    ``ROLLBACK`` when the connection goes back to the pool. In autocommit each statement
    is its own transaction and the driver sends neither, so a single-query read (list an
    inbox, get a message: the API's hot path) is one round trip. A block that must see
    one snapshot over several statements, or that writes, asks for ``write=True``."""
    reader = _readers.get(id(engine))
    if reader is None or reader.sync_engine.pool is not engine.sync_engine.pool:
        reader = _readers[id(engine)] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return reader


@asynccontextmanager
async def connect(engine: AsyncEngine, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection (a transaction when ``write``) whose failures become StorageUnavailable.

    The whole block is bounded by ``DB_TIMEOUT``: a paused or unreachable database makes
    callers fail fast (HTTP 503) instead of hanging; while the liveness probe already
    knows it is down, they fail at once.
    """
    if known_unavailable(engine):
        raise StorageUnavailable("the database is not answering")
    try:
        async with asyncio.timeout(DB_TIMEOUT):
            if write:
                async with engine.begin() as conn:
                    yield conn
            else:
                async with _reader(engine).connect() as conn:
                    yield conn
    except _DB_ERRORS as exc:
        raise_api_error(engine, exc)
        raise


def raise_api_error(engine: AsyncEngine, exc: BaseException) -> None:
    """Raise what the API answers for a database failure ``exc``: :class:`InvalidRequest`
    (400) for a value PostgreSQL refuses, :class:`StorageUnavailable` (503) for a lost,
    unreachable or hung database (a timeout also makes the liveness probe look again).
    Returns for anything else: a bug, which the caller re-raises as it is."""
    if isinstance(exc, TimeoutError) and (probe := _probes.get(id(engine))) is not None:
        probe.suspect()
    orig = getattr(exc, "orig", None)
    if any(isinstance(e, asyncpg.DataError)
           for e in (exc, orig, getattr(orig, "__cause__", None))):
        # e.g. a NUL character in a search term: the input's fault, not the database's
        raise InvalidRequest("a value contains characters that cannot be stored or "
                             "searched (such as NUL)") from exc
    if is_unavailable(exc):
        raise StorageUnavailable("the database is unavailable") from exc
