"""The raw-message store: one narrow interface, several backends.

:class:`BlobStore` is what delivery, the mailbox, the sweeper and the bench seed use; they
never know where the bytes live. Backends (chosen by ``MAILSAC_BLOB_BACKEND``, see
:func:`mailsac.storage.blobs_select.create_blob_store`):

* ``local`` (:mod:`mailsac.storage.blobs_local`): fan-out directories on this machine;
* ``postgres`` (:mod:`mailsac.storage.blobs_pg`): a ``blob_objects`` table;
* ``s3`` (:mod:`mailsac.storage.blobs_s3`): any S3-compatible object store.

A blob is written completely and durably before any metadata row points at it, so a crash
can leave at most an *orphan* blob (swept later, see :mod:`mailsac.storage.sweeper`) and
never a row without its bytes. Keys are never reused: one key, one write.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable

from mailsac.storage.blobwriter import BlobDraft

# A temp/staging file may belong to a DATA transfer still streaming in (at most an SMTP
# session's lifetime): sweeps remove such files only when they are at least this old.
TMP_MIN_AGE = 3600.0
TMP_SUFFIX = ".tmp"


def new_blob_key() -> str:
    """128 random bits, hex: unguessable and evenly spread over directories/partitions."""
    return secrets.token_hex(16)


def check_key(key: str) -> str:
    """``key`` if it looks like one of ours (it becomes part of a path or object name)."""
    if len(key) < 8 or not key.isalnum() or not key.isascii():
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobStore(ABC):
    """Durable storage of raw messages by key (see the module docstring).

    Errors are domain errors: :class:`~mailsac.errors.StorageUnavailable` (the SMTP
    layer answers 451) or :class:`~mailsac.errors.StorageFull` (452) when writing,
    :class:`~mailsac.errors.MessageNotFound` for a missing key when reading.
    """

    #: The ``MAILSAC_BLOB_BACKEND`` name of this backend.
    backend = "abstract"
    #: True when other nodes may store blobs here too (their outage journals are not
    #: visible to this node's orphan sweep, so it waits longer; see the sweeper).
    shared = False

    @property
    @abstractmethod
    def identity(self) -> str:
        """Names this store's contents: nodes with the same identity share one store
        (one orphan sweep at a time runs per identity, see mailsac.storage.joblock)."""

    async def start(self) -> None:  # noqa: B027 (an optional hook)
        """Prepare for use (directories, connections); called once at service start."""

    async def close(self) -> None:  # noqa: B027 (an optional hook)
        """Release connections and files; called once at service stop."""

    @abstractmethod
    async def write(self, key: str, data: bytes) -> None:
        """Durably store ``data`` under the new key ``key``."""

    @abstractmethod
    async def open_draft(self, key: str, first: bytes = b"") -> BlobDraft:
        """A local file that fills chunk by chunk and becomes blob ``key`` on commit."""

    @abstractmethod
    async def read(self, key: str) -> bytes:
        """The bytes of blob ``key``."""

    @abstractmethod
    async def delete(self, keys: Iterable[str]) -> int:
        """Delete these blobs (missing ones are skipped); return how many were deleted."""

    @abstractmethod
    def old_keys(self, min_age: float) -> AsyncGenerator[list[str], None]:
        """Batches of keys of blobs stored at least ``min_age`` seconds ago (candidates
        for the orphan sweep, which checks them against the metadata). One pass may
        stop early (bounded work); the next pass goes on from there."""
