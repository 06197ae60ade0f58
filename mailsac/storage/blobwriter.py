"""A blob written piece by piece while its message streams in (large SMTP DATA).

The draft is a local temp file. For the local backend (:class:`BlobDraft`) it lives in the
blob's own fan-out directory and :meth:`BlobDraft.commit` gives the same guarantee as
``BlobStore.write``: file fsynced, renamed into place, directory fsynced. For remote
backends (:class:`StagedDraft`) it is a staging file that ``commit`` uploads; it stays
readable (:attr:`BlobDraft.path`, for the analysis worker) until :meth:`BlobDraft.release`.
A draft that is not committed is deleted by :meth:`BlobDraft.discard` (a client that
disconnects mid-DATA leaves nothing behind); after a crash the orphan sweep / the store's
start-up removes stale temp files. Every file operation runs in a worker thread, never on
the loop.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from mailsac.errors import StorageFull, StorageUnavailable

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
COPY_CHUNK = 1024 * 1024
_T = TypeVar("_T")

# Discards started from a cancelled task: referenced until done so they are not collected.
_pending: set[asyncio.Future[None]] = set()


def storage_error(exc: OSError) -> StorageFull | StorageUnavailable:
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"blob directory is full: {exc.strerror}")
    return StorageUnavailable(f"cannot write blob: {exc.strerror or exc}")


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class BlobDraft:
    """An open temp file that becomes the blob ``key`` on :meth:`commit`."""

    def __init__(self, key: str, final: Path, fd: int, tmp: Path) -> None:
        self.key = key
        self.final = final
        self.tmp = tmp
        self.size = 0  # bytes written so far
        self._fd: int | None = fd
        self.committed = False
        # Held by every file operation: a discard from a cancelled session waits for a
        # write still running in its thread instead of closing the fd under it.
        self._lock = threading.Lock()

    @classmethod
    def open_sync(cls, key: str, final: Path) -> BlobDraft:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / (key + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return cls(key, final, fd, tmp)

    @property
    def open(self) -> bool:
        return self._fd is not None

    @property
    def path(self) -> Path:
        """A local file holding the blob's bytes: the committed blob (local backend) or
        the staging file (remote backends, readable until :meth:`release`)."""
        return self.final if self.committed else self.tmp

    async def release(self) -> None:
        """The local copy is no longer needed (after commit and analysis)."""

    async def _run(self, work: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(work)
        except OSError as exc:
            raise storage_error(exc) from exc

    def _write_sync(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "blob draft is closed")
            _write_all(self._fd, data)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (one thread hop); raise StorageFull / StorageUnavailable."""
        await self._run(lambda: self._write_sync(data))
        self.size += len(data)

    def _copy_sync(self, source: Path, offset: int) -> int:
        copied = 0
        with open(source, "rb") as src:
            src.seek(offset)
            while chunk := src.read(COPY_CHUNK):
                self._write_sync(chunk)
                copied += len(chunk)
        return copied

    async def copy_from(self, source: Path, offset: int = 0) -> None:
        """Append the bytes of file ``source`` from ``offset`` on, 1 MiB at a time."""
        self.size += await self._run(lambda: self._copy_sync(source, offset))

    def _commit_sync(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            raise OSError(errno.EBADF, "blob draft is closed")
        try:
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            os.replace(self.tmp, self.final)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
        self.committed = True

    async def commit(self) -> None:
        """fsync, rename into place, fsync the directory; on failure the temp file is gone."""
        await self._run(self._commit_sync)

    def _discard_sync(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.close(fd)
        finally:
            self.tmp.unlink(missing_ok=True)

    async def discard(self) -> None:
        """Close and delete the temp file (no-op once committed or discarded)."""
        if self._fd is None:
            return
        try:
            await asyncio.to_thread(self._discard_sync)
        except OSError:
            pass

    def discard_soon(self) -> None:
        """:meth:`discard` from code that cannot wait (a cancelled session's cleanup)."""
        if self._fd is None:
            return
        future = asyncio.ensure_future(self.discard())
        _pending.add(future)
        future.add_done_callback(_pending.discard)


class StagedDraft(BlobDraft):
    """A draft in a local staging file that :meth:`commit` uploads with ``upload(path,
    size)`` (a remote backend's durable store). The staging file is kept after the commit
    for the analysis worker and copies, and deleted by :meth:`release` (or on failure)."""

    def __init__(self, key: str, fd: int, tmp: Path,
                 upload: Callable[[Path, int], Awaitable[None]]) -> None:
        super().__init__(key, tmp, fd, tmp)
        self._upload = upload
        self._released = False

    @classmethod
    def open_staging(cls, key: str, tmp: Path,
                     upload: Callable[[Path, int], Awaitable[None]]) -> StagedDraft:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return cls(key, fd, tmp, upload)

    def _close_sync(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            raise OSError(errno.EBADF, "blob draft is closed")
        os.close(fd)  # no fsync: the upload, not this file, makes the blob durable

    async def commit(self) -> None:
        """Upload the staged bytes; durable once this returns. On failure the staging
        file is gone and the backend's error (StorageUnavailable …) is raised."""
        try:
            await self._run(self._close_sync)
            await self._upload(self.tmp, self.size)
        except BaseException:
            await asyncio.to_thread(self.tmp.unlink, True)
            raise
        self.committed = True

    async def release(self) -> None:
        if self.committed and not self._released:
            self._released = True
            await asyncio.to_thread(self.tmp.unlink, True)


async def start_draft(open_sync: Callable[[], BlobDraft], first: bytes) -> BlobDraft:
    """Open a draft (``open_sync``, in a thread) and write its ``first`` bytes; on any
    failure nothing is left behind, and OS errors become storage errors."""

    def work() -> BlobDraft:
        draft = open_sync()
        try:
            draft._write_sync(first)
        except BaseException:
            draft._discard_sync()
            raise
        draft.size = len(first)
        return draft

    try:
        return await asyncio.to_thread(work)
    except OSError as exc:
        raise storage_error(exc) from exc
