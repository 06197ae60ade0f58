"""Body renderings served by the API and the web viewer, computed once per stored message
and variant, off the event loop, and kept in a byte-bounded cache.

A rendering's cost grows with the message (a 2.5 MB HTML body takes a second or more to
turn into text or to sanitize), so none of it runs on the event loop: each one runs in a
worker thread, at most :data:`CONCURRENCY` at a time. Concurrent requests for the same
rendering share one computation, and a computation is never abandoned half-way because a
client went away: its result is cached for the next request, so reconnecting cannot
multiply the work. Renderings are keyed by the content-addressed blob key, so messages with
identical content share them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from mailsac.lru import ByteLRU
from mailsac.matching import match_haystack
from mailsac.mime.bodies import dirty_html, has_remote_images, sanitized_html, text_body
from mailsac.mime.parse import ParsedMessage
from mailsac.singleflight import SingleFlight
from mailsac.storage.messages import MessageRecord

__all__ = ["CONCURRENCY", "VARIANTS", "Renderings"]

Rendering = str | bool
CONCURRENCY = 2  # rendering threads at a time (the rest wait their turn)


def _remote_images_html(msg: ParsedMessage) -> str:
    return sanitized_html(msg, remote_images=True)


def _has_remote_images(msg: ParsedMessage) -> bool:
    return has_remote_images(msg.html)


VARIANTS: dict[str, Callable[[ParsedMessage], Rendering]] = {
    "text": text_body,
    "dirty": dirty_html,
    "sanitized": sanitized_html,
    "remote_images": _remote_images_html,
    "has_remote_images": _has_remote_images,
    "match": match_haystack,  # what a wait's ``contains`` searches (mailsac.matching)
}


def _sizeof(value: Rendering) -> int:
    return sys.getsizeof(value) + 200  # the string itself plus key and bookkeeping


class Renderings:
    """Computes and caches the body renderings of stored messages (see module doc)."""

    def __init__(self, parsed: Callable[[MessageRecord], Awaitable[ParsedMessage]],
                 max_bytes: int, concurrency: int = CONCURRENCY) -> None:
        self._parsed = parsed
        self.cache: ByteLRU[tuple[str, str], Rendering] = ByteLRU(max_bytes, _sizeof)
        self._flights: SingleFlight[tuple[str, str], Rendering] = SingleFlight(self.cache.put)
        self._concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the loop
        self.computed = 0  # renderings computed so far (for tests and metrics)

    async def text(self, record: MessageRecord) -> str:
        """The text body (the text part, or text derived from the HTML part)."""
        return str(await self.get(record, "text"))

    async def dirty(self, record: MessageRecord) -> str:
        """The HTML as sent, each ``cid:`` attachment inlined once."""
        return str(await self.get(record, "dirty"))

    async def sanitized(self, record: MessageRecord, *, remote_images: bool = False) -> str:
        """Sanitized HTML; with ``remote_images`` http(s) image sources are kept."""
        return str(await self.get(record, "remote_images" if remote_images else "sanitized"))

    async def has_remote_images(self, record: MessageRecord) -> bool:
        """Whether the HTML part refers to images on other servers."""
        return bool(await self.get(record, "has_remote_images"))

    async def get(self, record: MessageRecord, variant: str) -> Rendering:
        """The ``variant`` rendering of ``record``: cached, joined, or computed now."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown rendering {variant!r}")
        key = (record.blob_key, variant)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        # A cancelled request (client gone) leaves the computation running for the others.
        return await self._flights.run(key, lambda: self._compute(record, variant))

    def discard(self, blob_key: str) -> None:
        """Forget every rendering of ``blob_key`` (its blob is being deleted)."""
        for variant in VARIANTS:
            self.cache.discard((blob_key, variant))

    async def _compute(self, record: MessageRecord, variant: str) -> Rendering:
        parsed = await self._parsed(record)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        async with self._slots:
            result = await asyncio.to_thread(VARIANTS[variant], parsed)
        self.computed += 1
        return result

