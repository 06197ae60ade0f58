"""POP3 framing: bounded command lines, status replies and dot-stuffed multi-line responses.

* Commands are CRLF-terminated lines (RFC 1939 §3). RFC 2449 §4 limits a command to 255
  octets including the CRLF; we accept :data:`MAX_COMMAND` octets (a margin for sloppy
  clients) and answer longer ones with ``-ERR line too long`` after discarding the rest
  of the line, so its tail is never mistaken for a command.
* Multi-line responses (RFC 1939 §3) are byte-stuffed: a line starting with "." gets
  another "." in front (also after a bare LF, for clients that split lines on LF alone),
  and the response ends with ``CRLF.CRLF``. Message bodies are
  written in :data:`CHUNK_SIZE` pieces with ``drain()`` in between, so a large message
  never holds more than its stored copy plus one chunk in memory and never blocks the loop.
* :func:`top_end` finds where ``TOP n k`` cuts a message (RFC 1939 §7).
* Every read and write is bounded by the session's idle timeout (RFC 1939 §3: the
  autologout timer), so a client that stops reading cannot pin a session either. Reads
  are also bounded by :attr:`Wire.deadline` (the login deadline, then the session's
  absolute lifetime), whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

MAX_COMMAND = 512
"""Longest accepted command line in octets, CRLF included (RFC 2449 §4 says 255)."""
MAX_SASL_LINE = 2048
"""Longest accepted SASL client response line (RFC 5034 §4; PLAIN needs about 620)."""
STREAM_LIMIT = 4096
"""asyncio buffer limit for one line; anything longer is discarded unread."""
CHUNK_SIZE = 64 * 1024


class Bad(Exception):
    """A command error answered with ``-ERR`` that counts towards the bad-command limit."""


class LineTooLong(Exception):
    """The client sent a line longer than allowed; it was discarded up to its end."""


class Wire:
    """Reads command lines from and writes replies to one POP3 connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.deadline: float | None = None
        """Event-loop time after which no more command is read (None: only idle timeout)."""

    def remaining(self) -> float:
        """Seconds left until :attr:`deadline` (the idle timeout when there is none)."""
        if self.deadline is None:
            return self.timeout
        return self.deadline - asyncio.get_running_loop().time()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and self.remaining() <= 0

    async def read_line(self, max_length: int = MAX_COMMAND) -> bytes | None:
        """The next line without its CRLF; None at end of input.

        Raises :class:`LineTooLong` (the line has been consumed) and ``TimeoutError``
        when the client stays silent for the idle timeout or until the deadline.
        """
        async with asyncio.timeout(min(self.timeout, max(0.0, self.remaining()))):
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError:
                await self._skip_line()
                raise LineTooLong from None
        if len(line) > max_length:
            raise LineTooLong
        return line.rstrip(b"\r\n")

    async def _skip_line(self) -> None:
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(max(exc.consumed, 1))

    def discard_buffered(self) -> int:
        """Drop input already received but not read (before a TLS upgrade, RFC 2595 §4)."""
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        dropped = len(buffer)
        buffer.clear()
        return dropped

    async def drain(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def reply(self, text: str) -> None:
        """One status line (``+OK …`` / ``-ERR …``)."""
        self.writer.write(text.encode("utf-8", "replace") + b"\r\n")
        await self.drain()

    async def multiline(self, status: str, lines: Iterable[str]) -> None:
        """A status line, byte-stuffed lines, and the terminating ``.`` (RFC 1939 §3)."""
        parts = [status]
        parts.extend("." + line if line.startswith(".") else line for line in lines)
        parts.append(".")
        self.writer.write("\r\n".join(parts).encode("utf-8", "replace") + b"\r\n")
        await self.drain()

    async def message(self, status: str, data: bytes, end: int | None = None) -> None:
        """``status``, then ``data[:end]`` byte-stuffed in chunks, then ``CRLF.CRLF``.

        The stored bytes are sent exactly; the only additions are the stuffing dots (a
        client removes them) and a CRLF when the data does not already end with one, so
        that the terminator is a line of its own.
        """
        end = len(data) if end is None else end
        writer = self.writer
        writer.write(status.encode("utf-8", "replace") + b"\r\n")
        at_line_start = True
        for start in range(0, end, CHUNK_SIZE):
            chunk = data[start:min(start + CHUNK_SIZE, end)]
            if at_line_start and chunk.startswith(b"."):
                writer.write(b".")
            writer.write(chunk.replace(b"\n.", b"\n.."))
            at_line_start = chunk.endswith(b"\n")
            await self.drain()
            await asyncio.sleep(0)  # let other sessions run between chunks
        if end and not data[max(0, end - 2):end] == b"\r\n":
            writer.write(b"\r\n")
        writer.write(b".\r\n")
        await self.drain()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def top_end(raw: bytes, lines: int) -> int:
    """Offset just past the header block, its blank line and ``lines`` body lines."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return len(raw)  # no body: all of it is header
    end = crlf + 4 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
    # Count newlines a chunk at a time in C; step line by line only in the last chunk.
    while lines > 0 and end < len(raw):
        chunk_end = min(end + CHUNK_SIZE, len(raw))
        found = raw.count(b"\n", end, chunk_end)
        if found < lines:
            lines -= found
            end = chunk_end
            continue
        for _ in range(lines):
            end = raw.find(b"\n", end, chunk_end) + 1
        return end
    return min(end, len(raw))
