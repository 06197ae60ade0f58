"""Cluster-wide job locks: a background pass that must run on one node at a time.

Every node runs the same background loops; each pass first tries a PostgreSQL session
advisory lock (``pg_try_advisory_lock``) on a connection it keeps for the whole pass. A
node that does not get it skips that pass (another node is doing the work); a node that
dies mid-pass loses its session, and with it the lock, so the next pass elsewhere takes
over. The two-integer form is used with these documented keys (an operator can see the
holder in ``pg_locks`` where ``locktype = 'advisory'``):

=====================  ==============  =============================================
job                    classid         objid
=====================  ==============  =============================================
retention              ``0x6D61696C``  ``1`` for ``MAILSAC_CLUSTER=default``, else a hash
                                       of the cluster name (one runner per service)
orphan blob sweep      ``0x6D61696C``  ``2`` (shared blob store) or a hash of the
                                       local blob directory (one per directory)
chaos purge            ``0x6D61696C``  ``3`` (expired failure-injection rules and
                                       old events; one database, one purge)
=====================  ==============  =============================================
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

LOCK_CLASS = 0x6D61696C  # "mail"
RETENTION = (LOCK_CLASS, 1)
ORPHAN_SWEEP = (LOCK_CLASS, 2)
CHAOS_PURGE = (LOCK_CLASS, 3)
_FIXED_IDS = 3  # hashed keys stay above the fixed jobs' ids
UNLOCK_TIMEOUT = 5.0


def orphan_sweep_key(local_identity: str | None = None) -> tuple[int, int]:
    """The orphan sweep's key: one for a shared store (``None``), else one per local blob
    directory (``host:path``), so processes sharing a directory sweep it once, and
    machines with a directory each still sweep their own."""
    if local_identity is None:
        return ORPHAN_SWEEP
    objid = zlib.crc32(local_identity.encode()) & 0x7FFFFFFF
    return (LOCK_CLASS, objid if objid > _FIXED_IDS else objid + _FIXED_IDS + 1)


def retention_key(cluster: str = "default") -> tuple[int, int]:
    """The retention lock of the service named ``cluster``: services sharing a database
    each run their own retention, with their own settings."""
    if cluster == "default":
        return RETENTION
    objid = zlib.crc32(f"retention:{cluster}".encode()) & 0x7FFFFFFF
    return (LOCK_CLASS, objid if objid > _FIXED_IDS else objid + _FIXED_IDS + 1)


@asynccontextmanager
async def exclusive(engine: AsyncEngine, key: tuple[int, int]) -> AsyncIterator[bool]:
    """Yield True while this node holds ``key``; False (at once) if another node does."""
    async with engine.connect() as conn:
        held = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:c, :o)"),
                                        {"c": key[0], "o": key[1]})).scalar())
        await conn.commit()  # keep the session, not an open transaction, for the pass
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            try:
                async with asyncio.timeout(UNLOCK_TIMEOUT):
                    await conn.execute(text("SELECT pg_advisory_unlock(:c, :o)"),
                                       {"c": key[0], "o": key[1]})
                    await conn.commit()
            except BaseException:
                # Ending the session releases the lock: never pool a connection holding it.
                log.warning("could not release job lock %s; closing its connection", key)
                await conn.invalidate()
                raise


async def run_exclusively(engine: AsyncEngine, key: tuple[int, int], interval: float,
                          job: Callable[[], Awaitable[object]], name: str) -> None:
    """Run ``job`` now and then every ``interval`` seconds, each pass only while holding
    ``key`` (skipped when another node holds it); errors are logged, not fatal."""
    while True:
        try:
            async with exclusive(engine, key) as held:
                if held:
                    await job()
                else:
                    log.debug("%s skipped: another node holds its lock", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; will retry", name)
        await asyncio.sleep(interval)
