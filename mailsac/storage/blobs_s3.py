"""The ``s3`` blob backend: any S3-compatible object store, through aiobotocore.

Works with AWS S3, Ceph RGW, Garage, SeaweedFS and MinIO (path-style addressing for the
self-hosted ones). A blob is durable once its PUT (or CompleteMultipartUpload) has been
acknowledged. Staged (large) messages above 8 MiB go up as a multipart upload, one 8 MiB
part at a time, so this process never holds more than one part of them.

Nothing that grows with the message runs on the event loop: botocore would SHA-256 the
body for the signature and CRC32 it for a flexible checksum, both on the loop. Instead
payload signing is off (``UNSIGNED-PAYLOAD``) and each body carries a ``Content-MD5``
computed in a worker thread, which the store verifies: the same integrity, off the loop.

Orphans are found by listing (ListObjectsV2, 1000 keys a page, at most 100,000 keys per
sweep pass, the next pass going on after the last key) and comparing ``LastModified``
with the sweep's minimum age. Deletes go in batches of up to 1000 keys (DeleteObjects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from mailsac.errors import MessageNotFound, StorageUnavailable
from mailsac.storage.blobs import check_key
from mailsac.storage.blobs_remote import (
    DELETE_BATCH,
    SWEEP_MAX_KEYS,
    SWEEP_PAGE,
    UPLOAD_CHUNK,
    StagedBlobStore,
    chunks,
    read_chunk,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach the bucket (MAILSAC_S3_* settings). ``repr`` hides the
    secret so the options can never leak it into a log line."""

    bucket: str
    endpoint_url: str = ""  # empty: AWS's endpoint for the region
    region: str = "us-east-1"
    access_key_id: str = ""  # empty: botocore's usual chain (AWS_* env, profile, IAM role)
    secret_access_key: str = ""
    prefix: str = ""
    path_style: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_connections: int = 50

    def __repr__(self) -> str:
        return (f"S3Options(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r}, "
                f"region={self.region!r}, prefix={self.prefix!r})")


class S3BlobStore(StagedBlobStore):
    """Blobs as objects ``<prefix><key>`` of one bucket (see the module docstring)."""

    backend = "s3"

    def __init__(self, options: S3Options, staging_dir: Path, timeout: float = 30.0) -> None:
        super().__init__(staging_dir, timeout)
        self.options = options
        self._client: S3Client | None = None
        self._stack = contextlib.AsyncExitStack()
        self._sweep_after = ""  # the last object name the previous sweep pass looked at

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await super().start()
        o = self.options
        config = AioConfig(
            connect_timeout=o.connect_timeout, read_timeout=o.read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=o.max_connections,
            s3={"addressing_style": "path" if o.path_style else "auto",
                "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        credentials: dict[str, Any] = {}
        if o.access_key_id:
            credentials = {"aws_access_key_id": o.access_key_id,
                           "aws_secret_access_key": o.secret_access_key}
        self._client = await self._stack.enter_async_context(get_session().create_client(
            "s3", region_name=o.region, endpoint_url=o.endpoint_url or None, config=config,
            **credentials))
        try:
            async with asyncio.timeout(min(self.timeout, 10.0)):  # do not hold up start-up
                await self._client.head_bucket(Bucket=o.bucket)
        except Exception as exc:  # keep serving: intake answers 451 until the store is back
            log.error("s3 blob store: bucket %r at %s is not reachable yet (%s)", o.bucket,
                      o.endpoint_url or "AWS", type(exc).__name__)

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    @property
    def identity(self) -> str:
        o = self.options
        return f"s3:{o.endpoint_url or o.region}/{o.bucket}/{o.prefix}"

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise StorageUnavailable("the s3 blob store is not started")
        return self._client

    def name(self, key: str) -> str:
        return self.options.prefix + check_key(key)

    # -- writing ------------------------------------------------------------------------------

    async def write(self, key: str, data: bytes) -> None:
        md5 = await asyncio.to_thread(_md5, data)
        with self.failures("write"):
            async with asyncio.timeout(self.timeout):
                await self.client.put_object(Bucket=self.options.bucket, Key=self.name(key),
                                             Body=data, ContentMD5=md5)

    async def upload_file(self, key: str, path: Path, size: int) -> None:
        name, bucket = self.name(key), self.options.bucket
        with self.failures("write"):
            async with asyncio.timeout(self.timeout):
                if size <= UPLOAD_CHUNK:
                    data, md5 = await asyncio.to_thread(read_chunk, path, 0, size)
                    await self.client.put_object(Bucket=bucket, Key=name, Body=data,
                                                 ContentMD5=md5)
                    return
                upload = await self.client.create_multipart_upload(Bucket=bucket, Key=name)
                upload_id = upload["UploadId"]
                try:
                    parts: list[CompletedPartTypeDef] = []
                    for number, (offset, length) in enumerate(chunks(size), start=1):
                        data, md5 = await asyncio.to_thread(read_chunk, path, offset, length)
                        part = await self.client.upload_part(
                            Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number,
                            Body=data, ContentMD5=md5)
                        parts.append({"ETag": part["ETag"], "PartNumber": number})
                    await self.client.complete_multipart_upload(
                        Bucket=bucket, Key=name, UploadId=upload_id,
                        MultipartUpload={"Parts": parts})
                except BaseException:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.client.abort_multipart_upload(
                            Bucket=bucket, Key=name, UploadId=upload_id))
                    raise

    # -- reading ------------------------------------------------------------------------------

    async def read(self, key: str) -> bytes:
        with self.failures("read"):
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.client.get_object(Bucket=self.options.bucket,
                                                            Key=self.name(key))
                    async with response["Body"] as stream:
                        return await stream.read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    raise MessageNotFound(f"blob {key} is missing") from exc
                raise

    # -- deleting -----------------------------------------------------------------------------

    async def delete(self, keys: Iterable[str]) -> int:
        names = [self.name(k) for k in dict.fromkeys(keys)]
        removed = 0
        for start in range(0, len(names), DELETE_BATCH):
            batch = names[start:start + DELETE_BATCH]
            with self.failures("delete"):
                async with asyncio.timeout(self.timeout):
                    result = await self.client.delete_objects(
                        Bucket=self.options.bucket,
                        Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True})
            errors = result.get("Errors", [])
            for error in errors[:5]:
                log.warning("s3 blob store: could not delete %s: %s", error.get("Key"),
                            error.get("Code"))
            removed += len(batch) - len(errors)
        return removed

    # -- sweeping -----------------------------------------------------------------------------

    async def old_keys(self, min_age: float) -> AsyncGenerator[list[str], None]:
        prefix = self.options.prefix
        seen = 0
        while seen < SWEEP_MAX_KEYS:
            after: dict[str, Any] = {"StartAfter": self._sweep_after} if self._sweep_after else {}
            with self.failures("list"):
                async with asyncio.timeout(self.timeout):
                    page = await self.client.list_objects_v2(
                        Bucket=self.options.bucket, Prefix=prefix, MaxKeys=SWEEP_PAGE,
                        **after)
            contents = page.get("Contents", [])
            if not contents:
                self._sweep_after = ""  # the whole bucket is done: start over next time
                return
            self._sweep_after = contents[-1]["Key"]
            seen += len(contents)
            cutoff = datetime.now(UTC) - timedelta(seconds=min_age)
            keys = [obj["Key"][len(prefix):] for obj in contents
                    if obj["LastModified"] < cutoff and _ours(obj["Key"][len(prefix):])]
            if keys:
                yield keys
            if not page.get("IsTruncated"):
                self._sweep_after = ""
                return


def _md5(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _ours(key: str) -> bool:
    """Only names that are blob keys: the sweep never touches anything else in the bucket."""
    return len(key) >= 8 and key.isalnum() and key.isascii()
