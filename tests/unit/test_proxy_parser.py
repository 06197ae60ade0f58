"""The PROXY protocol parser (mailsac.listeners.proxy) on hostile input: every header form,
never an exception but ProxyHeaderError, never a byte read past the header or past its
bound, and a cost that does not grow with what the peer sends (ratios, not times)."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsac.listeners.proxy import (
    V1_MAX_LINE,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    TrustedProxies,
    client_address,
    parse_networks,
    read_header,
)
from tests.timing import assert_linear, growth_ratio

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AFTER = b"EHLO client.example\r\n"  # what the client sends next: must stay unread


def v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) \
        + payload


def tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    import ipaddress

    return v2(1, 0x11, ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
              + struct.pack("!HH", sport, dport) + tlvs)


def _stream(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=64)  # a small limit: the parser must not care
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def _parse(data: bytes, timeout: float = 5.0) -> tuple[ProxyHeader, bytes]:
    reader = _stream(data)
    header = await read_header(reader, timeout)
    return header, await reader.read()


async def _consumed(data: bytes) -> int:
    """Bytes the parser took from ``data`` before it returned or refused."""
    reader = _stream(data)
    try:
        await read_header(reader, 5.0)
    except ProxyHeaderError:
        pass
    return len(data) - len(await reader.read())


@pytest.mark.parametrize(("raw", "source", "destination"), [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n", ("203.0.113.7", 40000),
     ("192.0.2.1", 25)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n", ("2001:db8::7", 65535),
     ("2001:db8::1", 0)),
    (b"PROXY TCP6 ::ffff:203.0.113.9 ::1 1 2\r\n", ("203.0.113.9", 1), ("::1", 2)),
    (b"PROXY UNKNOWN\r\n", None, None),
    (b"PROXY UNKNOWN ffff:f...f:ffff 12345 65535\r\n", None, None),
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
     ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
])
async def test_v1_forms(raw: bytes, source: tuple[str, int] | None,
                        destination: tuple[str, int] | None) -> None:
    header, rest = await _parse(raw + AFTER)
    assert header == ProxyHeader(1, source, destination)
    assert rest == AFTER


async def test_v2_forms() -> None:
    header, rest = await _parse(tcp4("203.0.113.7", "192.0.2.1", 40000, 25) + AFTER)
    assert header == ProxyHeader(2, ("203.0.113.7", 40000), ("192.0.2.1", 25))
    assert rest == AFTER
    # TLVs (here an ALPN and a unique id) are skipped, not parsed
    tlvs = b"\x01\x00\x02h2" + b"\x05\x00\x04abcd" + b"\xee\x00\x00"
    header, rest = await _parse(tcp4("198.51.100.2", "192.0.2.1", 1, 2, tlvs) + AFTER)
    assert header.source == ("198.51.100.2", 1) and rest == AFTER
    six = (bytes.fromhex("20010db8" + "0" * 23 + "7") + bytes.fromhex("20010db8" + "0" * 23 + "1")
           + struct.pack("!HH", 5, 6))
    header, rest = await _parse(v2(1, 0x21, six) + AFTER)
    assert header.source == ("2001:db8::7", 5) and rest == AFTER
    # LOCAL (a balancer's health check), AF_UNSPEC and AF_UNIX: the peer's own address
    for local in (v2(0, 0x00, b""), v2(0, 0x11, b"\x00" * 12 + b"junk"), v2(1, 0x00, b""),
                  v2(1, 0x31, b"/sock".ljust(216, b"\x00"))):
        header, rest = await _parse(local + AFTER)
        assert header.source is None and rest == AFTER


@pytest.mark.parametrize("raw", [
    b"EHLO client.example\r\n",  # no header at all
    b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\n",  # bare LF
    b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n",  # a field missing
    b"PROXY TCP4 203.0.113.7  192.0.2.1 40000 25\r\n",  # double space
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",  # wrong family
    b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
    b"PROXY TCP4 203.0.113.07 192.0.2.1 1 2\r\n",  # leading zero: ambiguous
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 25\r\n",
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
    b"PROXY TCP4 \xff\xfe 192.0.2.1 1 2\r\n",
    b"PROXY " + b"A" * 200 + b"\r\n",  # too long
    b"PROXY TCP4 203.0.113.7",  # connection closed inside
    v2(2, 0x11, b"\x00" * 12),  # unknown command
    v2(1, 0x11, b"\x00" * 11),  # truncated address block
    v2(1, 0x12, b"\x00" * 12),  # UDP over a TCP listener
    v2(1, 0x41, b""),  # unknown family
    V2_SIGNATURE + b"\x11\x11\x00\x00",  # version 1 in a v2 header
    V2_SIGNATURE[:10] + b"XX\x21\x11\x00\x00",  # signature mismatch after 6 bytes
    V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than we accept: refused unread
    tcp4("203.0.113.7", "192.0.2.1", 1, 2)[:20],  # closed inside the payload
])
async def test_malformed_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        await _parse(raw)


async def test_a_slow_header_is_refused_at_the_deadline() -> None:
    reader = _stream(b"PROXY TCP4 203.0.1", eof=False)  # and then nothing
    with pytest.raises(ProxyHeaderError, match="within"):
        await read_header(reader, 0.05)


async def test_reads_are_bounded_whatever_follows() -> None:
    # No line end: the parser stops at the v1 bound, however much more is waiting.
    assert await _consumed(b"PROXY " + b"A" * 100_000) == V1_MAX_LINE
    # A v2 length over the bound is refused from the 16-byte header alone.
    huge = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_PAYLOAD + 1) + b"\x00" * 70_000
    assert await _consumed(huge) == 16
    assert await _consumed(V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_PAYLOAD)
                           + b"\x00" * 70_000) == 16 + V2_MAX_PAYLOAD


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ",
                                                 V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11"]))
def test_any_input_parses_or_is_refused_within_the_bound(data: bytes, prefix: bytes) -> None:
    raw = prefix + data

    async def run() -> None:
        reader = _stream(raw)
        try:
            header = await read_header(reader, 5.0)
        except ProxyHeaderError:
            header = None
        consumed = len(raw) - len(await reader.read())
        assert consumed <= max(V1_MAX_LINE, 16 + V2_MAX_PAYLOAD)
        if raw.startswith(b"PROXY "):
            assert consumed <= V1_MAX_LINE
        if header is not None and header.version == 1:
            assert raw[:consumed].endswith(b"\r\n")

    asyncio.run(run())


@FUZZ
@given(st.lists(st.sampled_from([b"TCP4", b"TCP6", b"UNKNOWN", b"1.2.3.4", b"::1", b"0",
                                 b"65535", b"99999", b"", b"\xff", b"a:b"]), max_size=7))
def test_v1_fields_in_any_order(parts: list[bytes]) -> None:
    raw = b"PROXY " + b" ".join(parts) + b"\r\n" + AFTER

    async def run() -> None:
        try:
            header, rest = await _parse(raw)
        except ProxyHeaderError:
            return
        assert rest == AFTER
        assert header.source is None or header.source[1] <= 65535

    asyncio.run(run())


def test_cost_does_not_grow_with_what_the_peer_sends() -> None:
    loop = asyncio.new_event_loop()
    try:
        def parse(data: bytes) -> None:
            async def run() -> None:
                reader = asyncio.StreamReader()
                reader.feed_data(data)
                reader.feed_eof()
                try:
                    await read_header(reader, 5.0)
                except ProxyHeaderError:
                    pass

            loop.run_until_complete(run())

        def v1_garbage(n: int) -> bytes:
            return b"PROXY " + b"1" * n

        def v2_garbage(n: int) -> bytes:
            return V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\x00" * n

        for make in (v1_garbage, v2_garbage):
            assert_linear(parse, make, 1000)
            # Bounded, not merely linear: 64 times the input costs about the same (only
            # the test's own copy of the input grows); a linear parser would show x64.
            ratios = [growth_ratio(parse, make, 1000, factor=64) for _ in range(3)]
            assert min(ratios) < 16, ratios
    finally:
        loop.close()


def test_trusted_networks() -> None:
    none = TrustedProxies()
    assert not none and not none.trusts("127.0.0.1")
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert proxies and proxies.cidrs == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    assert proxies.trusts("10.1.2.3") and proxies.trusts("::ffff:10.1.2.3")
    assert proxies.trusts("2001:db8::5") and proxies.trusts("192.0.2.7")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("192.0.2.8")
    assert not proxies.trusts("") and not proxies.trusts("not an ip")
    assert TrustedProxies(["10.1.2.3/8"]).cidrs == ["10.0.0.0/8"]  # host bits: forgiven
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])


async def test_client_address_reads_only_from_trusted_peers() -> None:
    proxies = TrustedProxies(["127.0.0.0/8"])
    header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"
    untrusted = _stream(header)
    assert await client_address(untrusted, ("192.0.2.50", 1), proxies) == ("192.0.2.50", 1)
    assert await untrusted.read() == header  # not a byte read from an untrusted peer
    assert await client_address(_stream(header), ("127.0.0.1", 9), proxies) \
        == ("203.0.113.7", 40000)
    assert await client_address(_stream(v2(0, 0, b"")), ("127.0.0.1", 9), proxies) \
        == ("127.0.0.1", 9)
    with pytest.raises(ProxyHeaderError):
        await client_address(_stream(b"EHLO x\r\n"), ("127.0.0.1", 9), proxies)
