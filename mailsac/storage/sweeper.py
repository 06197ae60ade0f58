"""Deletes orphan blobs: files no message row refers to.

Orphans appear when the process dies between the blob fsync and the metadata commit, or
when a commit fails after the blob was written. They are invisible to the API (no row
points at them); this sweep reclaims their space. Only blobs older than ``min_age`` are
considered, so a blob whose commit is still in flight is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.storage.blobs import BlobStore
from mailsac.storage.messages import unreferenced_blob_keys

log = logging.getLogger(__name__)

BATCH = 1000


async def sweep_orphans(engine: AsyncEngine, blobs: BlobStore, min_age: float = 600.0,
                        paused: Callable[[], bool] = lambda: False) -> int:
    """One pass over the blob tree; returns how many orphan blobs were deleted.

    ``paused`` (the outage journal is not empty) stops the pass: journaled messages have
    blobs but no rows yet, and must not be mistaken for orphans.
    """
    removed = 0
    for top in await asyncio.to_thread(blobs.top_dirs):
        if paused():
            log.info("orphan sweep skipped: the outage journal is not yet indexed")
            return removed
        keys = await asyncio.to_thread(blobs.old_keys_under, top, min_age)
        for start in range(0, len(keys), BATCH):
            async with engine.connect() as conn:
                orphans = await unreferenced_blob_keys(conn, keys[start:start + BATCH])
            removed += await blobs.delete(orphans)
        await asyncio.sleep(0)  # let other tasks run between directories
    if removed:
        log.info("orphan sweep removed %d blob(s) without metadata", removed)
    return removed


async def sweep_forever(
    engine: AsyncEngine, blobs: BlobStore, interval: float, min_age: float = 600.0,
    paused: Callable[[], bool] = lambda: False,
) -> None:
    """Sweep at start-up and then every ``interval`` seconds; errors are logged, not fatal."""
    while True:
        try:
            await sweep_orphans(engine, blobs, min_age, paused)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("orphan sweep failed; will retry")
        await asyncio.sleep(interval)
