"""The streaming DATA decoder against the whole-buffer algorithm, and the memory budget."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.listeners.admission import Admission
from mailsac.smtp.budget import DataBudget
from mailsac.smtp.datastream import DotDecoder, decode_whole
from tests.timing import assert_linear

# Pieces that make the interesting cases likely: dots at line starts, bare CR and LF,
# CRLFs, and whole or partial end-of-data lines.
_PIECES = st.sampled_from([b"\r", b"\n", b".", b"..", b"a", b"xyz", b"\r\n", b"\r\n.",
                           b"\r\n..", b"\n.", b"\r\n.\r", b"\r\n.\r\n", b".\r\n"])


def _decode_in_chunks(stream: bytes, cuts: list[int]) -> tuple[bytes, DotDecoder, int]:
    decoder = DotDecoder()
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        if decoder.done:
            break
        out.append(decoder.feed(stream[start:cut]))
        start = cut
    return b"".join(out), decoder, start


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=30).map(b"".join), st.data())
def test_any_chunking_gives_the_whole_buffer_result(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    expected = decode_whole(stream)
    content, decoder, fed = _decode_in_chunks(stream, cuts)
    if expected is None:
        assert not decoder.done
        assert decoder.data_len <= len(stream)  # never more than was sent
        return
    assert decoder.done
    assert content == expected[0]
    assert decoder.data_len == expected[1]
    # Whatever followed the dot in the chunk that ended DATA comes back as leftover.
    assert decoder.leftover + stream[fed:] == expected[2]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=10))
def test_arbitrary_bytes_and_cuts(body: bytes, cuts: list[int]) -> None:
    stream = body + b"\r\n.\r\n"
    content, decoder, _ = _decode_in_chunks(stream, [c for c in cuts if c <= len(stream)])
    expected = decode_whole(stream)
    assert expected is not None and decoder.done
    assert content == expected[0]


def test_known_cases() -> None:
    cases = {
        b".\r\n": b"",  # the empty message
        b"..\r\n.\r\n": b".\r\n",  # a first line that starts with a dot
        b"a\r\n..b\r\n.\r\n": b"a\r\n.b\r\n",
        b"a\n.\r\nb\r\n.\r\n": b"a\n.\r\nb\r\n",  # bare LF ends no line
        b"a\r\n.\n\r\n.\r\n": b"a\r\n\n\r\n",
    }
    for stream, content in cases.items():
        for cut in range(len(stream) + 1):
            got, decoder, _ = _decode_in_chunks(stream, [cut])
            assert decoder.done and got == content, (stream, cut)


def test_decoding_cost_is_linear_in_the_size() -> None:
    def run(chunks: list[bytes]) -> None:
        decoder = DotDecoder()
        for chunk in chunks:
            decoder.feed(chunk)

    def make(n: int) -> list[bytes]:
        stream = b"\r\n..x" * (n * 1000) + b"\r\n.\r\n"
        return [stream[i:i + 1000] for i in range(0, len(stream), 1000)]

    assert_linear(run, make, 20)


async def test_budget_leases_wait_grow_and_release() -> None:
    budget = DataBudget(1000)
    first = await budget.acquire(600, wait=0)
    assert first is not None
    assert not first.grow(1100) and first.size == 600  # refused growth changes nothing
    assert first.grow(900) and budget.used == 900
    assert await budget.acquire(200, wait=0.05) is None and budget.refused == 1
    waiting = asyncio.ensure_future(budget.acquire(500, wait=5))
    await asyncio.sleep(0.01)
    first.release()
    first.release()  # idempotent
    second = await waiting
    assert second is not None and budget.used == 500


async def test_supernet_cap_spans_networks() -> None:
    admission = Admission(max_total=100, max_per_ip=10, max_per_network=10,
                          max_per_supernet=3, wait_timeout=0)
    # Three different /24 networks inside one /16 fill its share...
    for ip in ("10.1.1.1", "10.1.2.1", "10.1.3.1"):
        assert await admission.acquire(ip)
    assert not await admission.acquire("10.1.4.1")
    # ... while another /16 is unaffected, and a released slot is usable again.
    assert await admission.acquire("10.2.1.1")
    admission.release("10.1.2.1")
    assert await admission.acquire("10.1.4.1")
