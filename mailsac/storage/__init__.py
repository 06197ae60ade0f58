"""Persistence: PostgreSQL metadata (SQLAlchemy Core + asyncpg) and the raw-message blob store."""

from mailsac.storage.blobs import BlobStore, new_blob_key
from mailsac.storage.blobs_local import LocalBlobStore
from mailsac.storage.messages import MessageRecord
from mailsac.storage.writer import MetadataWriter

__all__ = ["BlobStore", "LocalBlobStore", "MessageRecord", "MetadataWriter", "new_blob_key"]
