"""One message's DATA on its way in: a bounded memory buffer that spills to a local file
(the blob's temp file, or a remote blob backend's staging file: see BlobStore.open_draft).

Small messages (the common case) stay in :attr:`Spool.buffer` and are delivered as bytes,
as before. Once the SMTP layer decides a message is too large to hold (its memory lease
cannot grow), :meth:`Spool.spill` opens the blob's temp file, writes our ``Received:``
header first and then everything collected so far; later pieces are appended chunk by
chunk (file I/O in worker threads). Delivery then commits that draft instead of writing
the blob from memory (see :meth:`mailsac.delivery.Delivery.deliver`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from mailsac.storage.blobwriter import BlobDraft

HEAD_LIMIT = 64 * 1024  # the header block is looked at up to this size (RFC line limits)


@dataclass
class Spooled:
    """A message in a blob draft: our Received header (``header_len`` bytes), then DATA."""

    draft: BlobDraft
    when: datetime
    header_len: int
    taken: bool = False  # delivery owns the draft now: it commits or discards it

    @property
    def content_size(self) -> int:
        return self.draft.size - self.header_len


class Spool:
    """Collects DATA pieces; see the module docstring."""

    def __init__(self, start: Callable[[], Awaitable[Spooled]]) -> None:
        self._start = start
        self.buffer = bytearray()
        self.spooled: Spooled | None = None
        self.head = bytearray()  # the start of the content, up to the end of its headers
        self._head_done = False
        self.size = 0  # content bytes so far

    @property
    def memory(self) -> int:
        """Bytes this spool holds in memory."""
        return len(self.buffer) + len(self.head)

    def append(self, data: bytes) -> None:
        if not self._head_done:
            start = max(0, len(self.head) - 3)
            self.head += data[:HEAD_LIMIT - len(self.head)]
            end = self.head.find(b"\r\n\r\n", start)
            if end >= 0:
                del self.head[end + 2:]
            if end >= 0 or len(self.head) >= HEAD_LIMIT:
                self._head_done = True
        self.buffer += data
        self.size += len(data)

    async def spill(self) -> None:
        """Move what is buffered to the blob draft (opened on the first call)."""
        if self.spooled is None:
            self.spooled = await self._start()
        if self.buffer:
            await self.spooled.draft.write(self.buffer)
            self.buffer = bytearray()

    def take(self) -> bytes:
        """The whole content of a message that never spilled (the buffer is emptied)."""
        data = bytes(self.buffer)
        self.buffer = bytearray()
        return data

    def header_block(self) -> bytes:
        """The content's header block (through the CRLF of its last line), at most 64 KiB."""
        return bytes(self.head)

    def discard(self) -> None:
        """Forget the content; delete the draft unless delivery has taken it."""
        self.buffer = bytearray()
        if self.spooled is not None and not self.spooled.taken:
            self.spooled.draft.discard_soon()
