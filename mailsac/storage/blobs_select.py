"""Builds the blob store that ``MAILSAC_BLOB_BACKEND`` names (the composition root's helper)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.storage.blobs import BlobStore

if TYPE_CHECKING:
    from mailsac.config import Settings

BACKENDS = ("local", "postgres", "s3")


def create_blob_store(settings: Settings, engine: AsyncEngine) -> BlobStore:
    """The configured backend; remote ones stage large mail under ``<data dir>/staging``."""
    staging = settings.data_dir / "staging"
    if settings.blob_backend == "postgres":
        from mailsac.storage.blobs_pg import PostgresBlobStore

        return PostgresBlobStore(engine, staging, timeout=settings.blob_timeout)
    if settings.blob_backend == "s3":
        from mailsac.storage.blobs_s3 import S3BlobStore, S3Options

        options = S3Options(
            bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region, access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key, prefix=settings.s3_prefix,
            path_style=settings.s3_path_style, connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_connections=settings.s3_max_connections)
        return S3BlobStore(options, staging, timeout=settings.blob_timeout)
    from mailsac.storage.blobs_local import LocalBlobStore

    return LocalBlobStore(settings.blob_dir)
