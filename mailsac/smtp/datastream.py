"""Incremental DATA decoding: find the end-of-data line and undo dot-stuffing chunk by chunk.

RFC 5321 §4.5.2: the message ends at the first ``CRLF . CRLF`` (the very first line may be
the lone dot: a virtual CRLF precedes the data), and a line that starts with a dot had one
more dot added by the client. Only CRLF ends a line: a bare LF is data, exactly as in
:func:`decode_whole`, the whole-buffer reference this decoder must always agree with (the
tests check random chunk splits against it).

Each :meth:`DotDecoder.feed` does a constant number of C-speed passes (``find``,
``replace``) over the chunk plus a carry of at most 6 bytes, so the cost is linear in the
message size whatever the chunk boundaries, and the decoder never holds more than the
current chunk.
"""

from __future__ import annotations

END_OF_DATA = b"\r\n.\r\n"
_STUFFED = b"\r\n."
_KEEP = len(END_OF_DATA) - 1  # bytes a terminator may already occupy at a chunk's end


def decode_whole(stream: bytes) -> tuple[bytes, int, bytes] | None:
    """The simple algorithm: ``(content, stuffed length, bytes after the end)`` or None
    when ``stream`` holds no end-of-data line yet."""
    buf = b"\r\n" + stream
    end = buf.find(END_OF_DATA)
    if end < 0:
        return None
    data = buf[2:end + 2]
    if data[:1] == b".":
        data = data[1:]
    return data.replace(_STUFFED, b"\r\n"), end, buf[end + len(END_OF_DATA):]


class DotDecoder:
    """Feed raw DATA bytes; get the unstuffed content back piece by piece."""

    def __init__(self) -> None:
        self._carry = b"\r\n"  # the virtual CRLF, then a short unprocessed tail
        self._skip = 2  # output bytes still to drop: the virtual CRLF
        self._consumed = 0
        self.done = False
        self.leftover = b""  # bytes after the end-of-data line (pipelined commands)

    @property
    def data_len(self) -> int:
        """Stuffed bytes of content consumed so far (what the size limit applies to)."""
        return max(0, self._consumed - 2)

    def feed(self, chunk: bytes) -> bytes:
        """Consume ``chunk``; return the content bytes it completes (possibly empty)."""
        if self.done:
            raise ValueError("DATA already ended")
        buf = self._carry + chunk
        end = buf.find(END_OF_DATA)
        if end >= 0:
            cut = end + 2  # keep the CRLF in front of the dot: it ends the last line
            self.leftover = buf[end + len(END_OF_DATA):]
            self.done = True
            self._carry = b""
        else:
            cut = max(0, len(buf) - _KEEP)
            # Never split a "CRLF ." between this piece and the carry.
            if cut >= 2 and buf[cut - 2:cut + 1] == _STUFFED:
                cut -= 2
            elif cut >= 1 and buf[cut - 1:cut + 2] == _STUFFED:
                cut -= 1
            self._carry = buf[cut:]
        piece = buf[:cut]
        self._consumed += cut
        out = piece.replace(_STUFFED, b"\r\n")  # unstuffing keeps every CRLF in place
        if self._skip and out:
            dropped = min(self._skip, len(out))
            self._skip -= dropped
            out = out[dropped:]
        return out
