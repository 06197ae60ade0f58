"""Deletes orphan blobs: blobs no message row refers to, in whichever backend.

Orphans appear when the process dies between the blob write and the metadata commit, or
when a commit fails after the blob was written. They are invisible to the API (no row
points at them); this sweep reclaims their space. Only blobs older than ``min_age`` are
considered, so a blob whose commit is still in flight is never touched. The backend lists
the candidates (:meth:`BlobStore.old_keys`: a directory walk, an anti-join, or an S3
listing); every batch is checked against ``messages`` here before it is deleted.

A *shared* store (postgres, s3) also holds blobs of other nodes, whose outage journals
(rows not yet committed) this node cannot see: the periodic sweep then waits at least
:data:`SHARED_MIN_AGE`, longer than a journal accepts mail (MAILSAC_JOURNAL_MAX_AGE).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.storage.blobs import BlobStore
from mailsac.storage.messages import unreferenced_blob_keys

log = logging.getLogger(__name__)

MIN_AGE = 600.0
SHARED_MIN_AGE = 6 * 3600.0


async def sweep_orphans(engine: AsyncEngine, blobs: BlobStore, min_age: float | None = None,
                        paused: Callable[[], bool] = lambda: False) -> int:
    """One pass over the blob store; returns how many orphan blobs were deleted.

    ``paused`` (the outage journal is not empty) stops the pass: journaled messages have
    blobs but no rows yet, and must not be mistaken for orphans. ``min_age`` defaults to
    :data:`MIN_AGE`, or :data:`SHARED_MIN_AGE` for a shared store.
    """
    if min_age is None:
        min_age = SHARED_MIN_AGE if blobs.shared else MIN_AGE
    removed = 0
    if paused():
        log.info("orphan sweep skipped: the outage journal is not yet indexed")
        return removed
    batches = blobs.old_keys(min_age)
    try:
        async for keys in batches:
            if paused():
                log.info("orphan sweep skipped: the outage journal is not yet indexed")
                return removed
            async with engine.connect() as conn:
                orphans = await unreferenced_blob_keys(conn, keys)
            if orphans:
                removed += await blobs.delete(orphans)
    finally:
        await batches.aclose()
    if removed:
        log.info("orphan sweep removed %d blob(s) without metadata", removed)
    return removed


async def sweep_forever(
    engine: AsyncEngine, blobs: BlobStore, interval: float, min_age: float | None = None,
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
