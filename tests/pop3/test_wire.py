"""Framing units without a server: byte-stuffing across chunk boundaries, TOP's cut point."""

from __future__ import annotations

import asyncio

import pytest

from mailsac.pop3.wire import CHUNK_SIZE, Wire, top_end


class _Writer:
    """Just enough of a StreamWriter to collect what is written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


async def _sent(data: bytes, end: int | None = None) -> bytes:
    writer = _Writer()
    wire = Wire(asyncio.StreamReader(), writer, 5.0)  # type: ignore[arg-type]
    await wire.message("+OK", data, end)
    return bytes(writer.data)


def _unstuff(sent: bytes) -> bytes:
    status, _, rest = sent.partition(b"\r\n")
    assert status == b"+OK" and rest.endswith(b"\r\n.\r\n")
    lines = rest[:-3].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.mark.parametrize("data", [
    b"a\r\n.b\r\n",
    b".first\r\n..\r\n.\r\n",
    b"x" * (CHUNK_SIZE - 2) + b"\r\n.at the chunk boundary\r\n",
    b"x" * (CHUNK_SIZE - 1) + b"\r\n.split CRLF\r\n",
    b"x" * CHUNK_SIZE + b".not a line start\r\n",
])
async def test_stuffing_round_trips(data: bytes) -> None:
    sent = await _sent(data)
    assert b"\r\n.\r\n" not in sent[:-5]  # no early terminator
    assert _unstuff(sent) == data


async def test_a_final_line_without_crlf_gets_one_before_the_terminator() -> None:
    assert await _sent(b"no newline") == b"+OK\r\nno newline\r\n.\r\n"
    assert await _sent(b"") == b"+OK\r\n.\r\n"
    assert await _sent(b"ab\r\ncd\r\n", 4) == b"+OK\r\nab\r\n.\r\n"


def test_top_end() -> None:
    raw = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree\r\n"
    head = len(b"A: 1\r\nB: 2\r\n\r\n")
    assert top_end(raw, 0) == head
    assert raw[:top_end(raw, 2)].endswith(b"one\r\ntwo\r\n")
    assert top_end(raw, 99) == len(raw)
    assert top_end(b"A: 1\r\nno body", 3) == len(b"A: 1\r\nno body")
    assert top_end(b"A: 1\n\nbare\nlf\n", 1) == len(b"A: 1\n\nbare\n")
    big = b"H: x\r\n\r\n" + b"line\r\n" * 50_000
    assert top_end(big, 30_000) == len(b"H: x\r\n\r\n") + 6 * 30_000
