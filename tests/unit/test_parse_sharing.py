"""Concurrent reads of one uncached message share one parse, and a reader going away
(its request cancelled) does not fail the others waiting for the same parse."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mailsac.mailbox import Mailboxes
from mailsac.storage import LocalBlobStore, new_blob_key

RAW = (b"Subject: shared parse\r\nFrom: a@example.org\r\nContent-Type: text/plain\r\n\r\n"
       + b"line of text\r\n" * 60_000)  # big enough to still be parsing when cancelled


async def test_a_cancelled_reader_does_not_fail_the_others(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    await blobs.start()
    key = new_blob_key()
    await blobs.write(key, RAW)
    nothing: Any = None
    mailboxes = Mailboxes(nothing, nothing, blobs, 64 * 1024 * 1024, nothing)
    record: Any = SimpleNamespace(blob_key=key)

    first = asyncio.create_task(mailboxes.parsed(record))
    for _ in range(3):
        await asyncio.sleep(0)
    second = asyncio.create_task(mailboxes.parsed(record))
    await asyncio.sleep(0)
    assert not first.done(), "the parse finished before the test could cancel a reader"
    first.cancel()
    parsed = await asyncio.wait_for(second, 30)
    assert parsed.subject == "shared parse"
    assert first.cancelled()
    assert mailboxes.cache.get(key) is parsed  # kept for the next reader
    assert await mailboxes.parsed(record) is parsed
