"""The PROXY protocol (HAProxy's ``proxy-protocol.txt``, versions 1 and 2) for SMTP and POP3.

A load balancer in front of the mail listeners opens its own TCP connection to us, so the
peer address is the balancer's. With the PROXY protocol it first sends one header naming
the real client; everything downstream (admission caps, throttles, deny-lists, the
message's ``ip``, our ``Received:`` header, POP3 login limits) must then see that address.

Trust: the header is honoured only from :class:`TrustedProxies` (``MAILSAC_TRUSTED_PROXIES``,
empty = never), and from them it is *required*: a connection from a trusted network that
does not start with a well-formed header within ``timeout`` seconds is refused, so a
client can never reach us "through" the balancer with the balancer's address. From any
other peer no header is read at all (``PROXY TCP4 …`` is then just a bad command).

Reading is bounded (aiosmtpd's own ``aiosmtpd.proxy_protocol`` is not used: it reads the
v1 line with ``readuntil()`` up to the stream limit before checking its length, applies
to every peer rather than trusted networks, and sits after an implicit-TLS handshake where
SMTPS needs it before): the v1 line is read one byte at a time up to
:data:`V1_MAX_LINE` (107) bytes, and a v2 header is its 16 fixed bytes plus a payload of
at most :data:`V2_MAX_PAYLOAD` bytes, refused from the length field before it is read.
Nothing after the header is consumed, so the client's first bytes (a TLS ClientHello on
SMTPS) stay in the stream. v2 ``LOCAL`` (a balancer's own health check), v1 ``UNKNOWN``
and address families without an IP (``AF_UNSPEC``, ``AF_UNIX``) mean "use the peer's own
address"; v2 TLVs are skipped without being parsed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

V1_PREFIX = b"PROXY "
V1_MAX_LINE = 107
"""Longest v1 header, CRLF included (the spec's worst case: ``TCP6`` with full addresses)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX_PAYLOAD = 4096
"""Largest v2 address block + TLVs accepted (the spec allows 65535; balancers send far less)."""
HEADER_TIMEOUT = 5.0

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V2_TCP4, _V2_TCP6, _V2_UNSPEC, _V2_UNIX_STREAM = 0x11, 0x21, 0x00, 0x31

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyHeaderError(Exception):
    """The PROXY header from a trusted peer was missing, malformed, too long or too slow."""


class Reader(Protocol):
    """What the parser needs of a stream (``asyncio.StreamReader`` has it)."""

    async def readexactly(self, n: int) -> bytes: ...


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: ``source`` is the real client, None to keep the peer's address."""

    version: int
    source: Address | None
    destination: Address | None = None


def normalize_ip(text: str) -> str:
    """The canonical form of an IP address; an IPv4-mapped IPv6 address as IPv4."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) -> networks; ``ValueError`` naming a bad entry."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP network (e.g. 10.0.0.0/8): {exc}"
                             ) from None
    return tuple(networks)


class TrustedProxies:
    """The networks whose PROXY headers and ``X-Forwarded-For`` headers are believed."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = parse_networks(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    @property
    def cidrs(self) -> list[str]:
        """The networks as strings (for uvicorn's ``forwarded_allow_ips``)."""
        return [str(n) for n in self.networks]

    def trusts(self, host: str) -> bool:
        """Is ``host`` (a peer address as the socket reports it) in a trusted network?"""
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)


def _port(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 5 or int(raw) > 65535:
        raise ProxyHeaderError(f"bad port {raw[:8]!r} in PROXY v1 header")
    return int(raw)


def _ip(raw: bytes, version: int) -> str:
    try:
        if b"%" in raw:  # an IPv6 scope ("fe80::1%eth0") names no client
            raise ValueError
        ip = ipaddress.ip_address(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"bad address {raw[:46]!r} in PROXY v1 header") from None
    if ip.version != version:
        raise ProxyHeaderError(f"address {ip} in PROXY v1 header is not IPv{version}")
    return normalize_ip(str(ip))


def parse_v1(line: bytes) -> ProxyHeader:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n`` or ``PROXY UNKNOWN …\\r\\n``."""
    if not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise ProxyHeaderError("PROXY v1 header does not end with CRLF")
    parts = line[len(V1_PREFIX):-2].split(b" ")
    if parts[0] == b"UNKNOWN":  # the balancer does not know (e.g. a non-IP client)
        return ProxyHeader(1, None)
    if parts[0] not in (b"TCP4", b"TCP6") or len(parts) != 5:
        raise ProxyHeaderError(f"malformed PROXY v1 header {line[:40]!r}")
    version = 4 if parts[0] == b"TCP4" else 6
    return ProxyHeader(1, (_ip(parts[1], version), _port(parts[3])),
                       (_ip(parts[2], version), _port(parts[4])))


def parse_v2(head: bytes, payload: bytes) -> ProxyHeader:
    """A v2 header: ``head`` is its 16 fixed bytes, ``payload`` the rest (addresses, TLVs)."""
    if head[:12] != V2_SIGNATURE or head[12] >> 4 != 2:
        raise ProxyHeaderError("bad PROXY v2 signature or version")
    command, family = head[12] & 0x0F, head[13]
    if command == _V2_LOCAL:  # the balancer's own connection (health check): peer address
        return ProxyHeader(2, None)
    if command != _V2_PROXY:
        raise ProxyHeaderError(f"unknown PROXY v2 command {command}")
    if family == _V2_TCP4 and len(payload) >= 12:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", payload)
        return ProxyHeader(2, (str(ipaddress.IPv4Address(src)), sport),
                           (str(ipaddress.IPv4Address(dst)), dport))
    if family == _V2_TCP6 and len(payload) >= 36:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", payload)
        return ProxyHeader(2, (normalize_ip(str(ipaddress.IPv6Address(src))), sport),
                           (normalize_ip(str(ipaddress.IPv6Address(dst))), dport))
    if family in (_V2_UNSPEC, _V2_UNIX_STREAM):  # no IP address to report: peer address
        return ProxyHeader(2, None)
    raise ProxyHeaderError(f"unsupported or truncated PROXY v2 address family 0x{family:02x} "
                           f"({len(payload)} bytes)")


async def _read(reader: Reader) -> ProxyHeader:
    start = await reader.readexactly(len(V1_PREFIX))
    if start == V1_PREFIX:
        line = bytearray(start)
        while not line.endswith(b"\n"):  # byte by byte: never reads past the header
            if len(line) >= V1_MAX_LINE:
                raise ProxyHeaderError(f"PROXY v1 header longer than {V1_MAX_LINE} bytes")
            line += await reader.readexactly(1)
        return parse_v1(bytes(line))
    if start != V2_SIGNATURE[:len(start)]:
        raise ProxyHeaderError(f"no PROXY header: the connection starts with {start!r}")
    head = start + await reader.readexactly(16 - len(start))
    if head[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("bad PROXY v2 signature")
    (length,) = struct.unpack_from("!H", head, 14)
    if length > V2_MAX_PAYLOAD:  # refused before a byte of it is read
        raise ProxyHeaderError(f"PROXY v2 header of {length} bytes is longer than "
                               f"{V2_MAX_PAYLOAD}")
    return parse_v2(head, await reader.readexactly(length) if length else b"")


async def read_header(reader: Reader, timeout: float = HEADER_TIMEOUT) -> ProxyHeader:
    """Read exactly one PROXY header (v1 or v2) from ``reader`` within ``timeout`` s.

    Raises :class:`ProxyHeaderError` for anything but a complete, well-formed header."""
    try:
        async with asyncio.timeout(timeout):
            return await _read(reader)
    except TimeoutError:
        raise ProxyHeaderError(f"no complete PROXY header within {timeout:g} s") from None
    except asyncio.IncompleteReadError:
        raise ProxyHeaderError("connection closed inside the PROXY header") from None


async def client_address(reader: Reader, peer: Address, proxies: TrustedProxies,
                         timeout: float = HEADER_TIMEOUT) -> Address:
    """The real client of a new connection: from its PROXY header when ``peer`` is a
    trusted proxy (:class:`ProxyHeaderError` if the header is bad), else ``peer``."""
    if not proxies.trusts(peer[0]):
        return peer
    header = await read_header(reader, timeout)
    return header.source if header.source is not None else peer
