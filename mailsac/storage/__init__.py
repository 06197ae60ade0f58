"""Persistence: PostgreSQL metadata (SQLAlchemy Core + asyncpg) and the raw-message blob dir."""

from mailsac.storage.blobs import BlobStore, new_blob_key
from mailsac.storage.messages import MessageRecord
from mailsac.storage.writer import MetadataWriter

__all__ = ["BlobStore", "MessageRecord", "MetadataWriter", "new_blob_key"]
