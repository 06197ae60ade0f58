"""What the remote blob backends (PostgreSQL, S3) share: local staging files, bounded
chunked reads of them off the loop, a per-operation deadline and error mapping.

Large mail streams into a *staging* file on this node (``<data dir>/staging``) while DATA
arrives; the analysis worker reads that file, and ``commit`` uploads it (see
:class:`~mailsac.storage.blobwriter.StagedDraft`). Staging files left by a crash are
removed at start-up once they are older than any SMTP session can be.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailsac.errors import MailsacError, StorageUnavailable
from mailsac.storage.blobs import TMP_MIN_AGE, TMP_SUFFIX, BlobStore, check_key
from mailsac.storage.blobwriter import BlobDraft, StagedDraft, start_draft

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 8 * 1024 * 1024  # staged files are read (and uploaded) this much at a time
DELETE_BATCH = 1000  # keys per delete request (S3 DeleteObjects takes at most 1000)
SWEEP_PAGE = 1000  # keys per page of the orphan sweep listing
SWEEP_MAX_KEYS = 100_000  # keys one orphan-sweep pass looks at; the next pass goes on


def read_chunk(path: Path, offset: int, size: int) -> tuple[bytes, str]:
    """``size`` bytes of ``path`` from ``offset`` and their base64 MD5 (in a thread)."""
    import base64

    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    return data, base64.b64encode(hashlib.md5(data).digest()).decode()


def chunks(size: int, chunk: int = UPLOAD_CHUNK) -> list[tuple[int, int]]:
    """(offset, length) pieces covering ``size`` bytes (one empty piece for 0 bytes)."""
    if size <= 0:
        return [(0, 0)]
    return [(start, min(chunk, size - start)) for start in range(0, size, chunk)]


class StagedBlobStore(BlobStore):
    """A remote backend: drafts are staging files uploaded on commit."""

    shared = True

    def __init__(self, staging_dir: Path, timeout: float) -> None:
        self.staging_dir = Path(staging_dir)
        self.timeout = timeout

    async def start(self) -> None:
        await asyncio.to_thread(self._clean_staging)

    def _clean_staging(self) -> None:
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for entry in os.scandir(self.staging_dir):
            try:
                if now - entry.stat().st_mtime >= TMP_MIN_AGE:
                    os.unlink(entry.path)
            except OSError:
                continue

    @abstractmethod
    async def upload_file(self, key: str, path: Path, size: int) -> None:
        """Durably store the ``size`` bytes of local file ``path`` as blob ``key``."""

    async def open_draft(self, key: str, first: bytes = b"") -> BlobDraft:
        tmp = self.staging_dir / (check_key(key) + TMP_SUFFIX)

        async def upload(path: Path, size: int) -> None:
            await self.upload_file(key, path, size)

        return await start_draft(lambda: StagedDraft.open_staging(key, tmp, upload), first)

    @contextmanager
    def failures(self, what: str) -> Iterator[None]:
        """Map backend errors (network, server, timeout) to StorageUnavailable; domain
        errors (MessageNotFound …) and cancellation pass through unchanged."""
        try:
            yield
        except (MailsacError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.warning("%s blob store: cannot %s: %s", self.backend, what,
                        type(exc).__name__ + (f": {exc}" if str(exc) else ""))
            raise StorageUnavailable(
                f"the {self.backend} blob store is unavailable ({what})") from exc
