"""Where webhook and Slack requests may go: the SSRF guard.

Every destination is resolved here (``getaddrinfo`` in a small thread pool of its own, so
a slow resolver never blocks the event loop or the default executor) and each address is
checked: loopback, RFC 1918, link-local, ULA, CGNAT, multicast, ``0.0.0.0/8``, broadcast,
reserved and documentation ranges are refused, and so are IPv6 forms that embed such an
IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo). A name with any refused address is refused
as a whole. :mod:`mailsac.forwarding.pinned` then connects to exactly the address that was
checked, so a DNS answer that changes between check and connect (DNS rebinding) is harmless.

``allow_private`` (``MAILSAC_WEBHOOK_ALLOW_PRIVATE``) lifts the private-range rule for
self-hosted setups; multicast and unspecified addresses stay refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPAT = ipaddress.IPv6Network("::/96")
# Listed explicitly as well, so the rule does not depend on the Python version's tables.
_V4_SPECIAL = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4"))


class DestinationRefused(Exception):
    """The destination resolves to an address webhooks may not reach."""


class ResolveFailed(Exception):
    """The destination's name could not be resolved (reported as a connect failure)."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _COMPAT or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _v4_refused(ip: ipaddress.IPv4Address, allow_private: bool) -> bool:
    if ip.is_multicast or ip.is_unspecified or ip == ipaddress.IPv4Address("255.255.255.255"):
        return True
    if allow_private:
        return False
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
            or not ip.is_global or any(ip in net for net in _V4_SPECIAL))


def is_refused(ip: IPAddress, *, allow_private: bool = False) -> bool:
    """True when webhooks must not connect to ``ip``."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_refused(ip, allow_private)
    if ip.scope_id:  # fe80::1%eth0: a zone only makes sense on the local link
        return not allow_private
    inner = embedded_ipv4(ip)
    if inner is not None and _v4_refused(inner, allow_private):
        return True
    if ip.is_multicast or ip.is_unspecified:
        return True
    if allow_private:
        return False
    if ip.teredo is not None or ip in _NAT64_LOCAL or ip in _COMPAT:  # ::a.b.c.d is obsolete
        return True
    if inner is not None:  # a public IPv4 address in a translation prefix
        return False
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_site_local
            or ip.is_reserved or not ip.is_global)


def parse_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is a literal (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Checked:
    """A destination that passed the guard: connect to ``ips`` (in order), speak to ``host``."""

    host: str
    port: int
    ips: tuple[str, ...]


class EgressGuard:
    """Resolves and checks webhook destinations (see the module docstring)."""

    def __init__(self, *, allow_private: bool = False, resolve_timeout: float = 5.0,
                 resolver_threads: int = 8) -> None:
        self.allow_private = allow_private
        self._timeout = resolve_timeout
        self._pool = ThreadPoolExecutor(resolver_threads, thread_name_prefix="webhook-dns")

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = parse_literal(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.run_in_executor(
                self._pool, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM), self._timeout)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise ResolveFailed(type(exc).__name__) from None
        found: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            ip = parse_literal(str(sockaddr[0]))
            if ip is not None and ip not in found:
                found.append(ip)
        if not found:
            raise ResolveFailed("no address")
        return found

    async def check(self, host: str, port: int) -> Checked:
        """Resolve ``host`` and return the address to connect to, or raise
        :class:`DestinationRefused` / :class:`ResolveFailed`."""
        addresses = await self.resolve(host, port)
        if any(is_refused(ip, allow_private=self.allow_private) for ip in addresses):
            raise DestinationRefused(host)
        return Checked(host=host.strip("[]").lower(), port=port,
                       ips=tuple(str(ip) for ip in addresses[:4]))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
