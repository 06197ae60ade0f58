"""The ``local`` blob backend: fan-out directories, temp file + fsync + rename, dir fsync.

One machine's default. Every file operation runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path

import aiofiles

from mailsac.errors import MessageNotFound, StorageFull, StorageUnavailable
from mailsac.storage.blobs import TMP_MIN_AGE, TMP_SUFFIX, BlobStore, check_key
from mailsac.storage.blobwriter import BlobDraft, start_draft

log = logging.getLogger(__name__)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
SWEEP_BATCH = 1000


class LocalBlobStore(BlobStore):
    """Stores raw message bytes under ``root/ab/cd/abcd…`` (65,536 leaf directories)."""

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Leaf directories known to exist, by their 4-character key prefix (at most 65,536
        # short strings for our hex keys, rather than as many Path objects).
        self._made_dirs: set[str] = set()

    @property
    def identity(self) -> str:
        return f"{socket.gethostname()}:{self.root.resolve()}"

    def path_for(self, key: str) -> Path:
        check_key(key)
        return self.root / key[0:2] / key[2:4] / key

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        await asyncio.to_thread(self.ensure_root)

    # -- writing ------------------------------------------------------------------------------

    def _write_sync(self, key: str, data: bytes) -> None:
        final = self.path_for(key)
        directory = final.parent
        if key[:4] not in self._made_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(key[:4])
        tmp = directory / (key + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    async def write(self, key: str, data: bytes) -> None:
        """Durably store ``data`` under ``key``; raise StorageFull/StorageUnavailable.

        The whole write/fsync/rename runs in one worker-thread hop: aiofiles would need a
        hop per call, and fsync has no aiofiles wrapper.
        """
        try:
            await asyncio.to_thread(self._write_sync, key, data)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                raise StorageFull(f"blob directory is full: {exc.strerror}") from exc
            raise StorageUnavailable(f"cannot write blob: {exc.strerror or exc}") from exc

    async def open_draft(self, key: str, first: bytes = b"") -> BlobDraft:
        """A temp file for blob ``key`` that fills chunk by chunk (see BlobDraft)."""
        final = self.path_for(key)

        def open_sync() -> BlobDraft:
            draft = BlobDraft.open_sync(key, final)
            self._made_dirs.add(key[:4])
            return draft

        return await start_draft(open_sync, first)

    # -- reading ------------------------------------------------------------------------------

    async def read(self, key: str) -> bytes:
        try:
            async with aiofiles.open(self.path_for(key), "rb") as f:
                return await f.read()
        except FileNotFoundError as exc:
            raise MessageNotFound(f"blob {key} is missing") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot read blob: {exc.strerror or exc}") from exc

    # -- deleting -----------------------------------------------------------------------------

    def _delete_sync(self, keys: Iterable[str]) -> int:
        removed = 0
        for key in keys:
            try:
                self.path_for(key).unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete blob %s: %s", key, exc)
        return removed

    async def delete(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        if not keys:
            return 0
        return await asyncio.to_thread(self._delete_sync, keys)

    # -- sweeping -----------------------------------------------------------------------------

    def top_dirs(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and len(p.name) == 2)

    def old_keys_under(self, top: Path, min_age: float, now: float | None = None) -> list[str]:
        """Keys of blobs under one top-level directory older than ``min_age`` seconds.

        Also removes temp files of writes that never finished. Blocking: run it in a
        worker thread; one top directory holds about 1/256 of all blobs.
        """
        now = time.time() if now is None else now
        found: list[str] = []
        for second in top.iterdir():
            if not second.is_dir():
                continue
            for entry in os.scandir(second):
                try:
                    age = now - entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < min_age:
                    continue
                if entry.name.endswith(TMP_SUFFIX):
                    if age >= max(min_age, TMP_MIN_AGE):
                        Path(entry.path).unlink(missing_ok=True)
                else:
                    found.append(entry.name)
        return found

    async def old_keys(self, min_age: float) -> AsyncGenerator[list[str], None]:
        for top in await asyncio.to_thread(self.top_dirs):
            keys = await asyncio.to_thread(self.old_keys_under, top, min_age)
            for start in range(0, len(keys), SWEEP_BATCH):
                yield keys[start:start + SWEEP_BATCH]
            await asyncio.sleep(0)  # let other tasks run between directories
