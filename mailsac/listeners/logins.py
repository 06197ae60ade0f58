"""What the POP3 and SMTP AUTH listeners share about logins: failure limits, SASL PLAIN.

A failed login is counted twice in a :class:`mailsac.throttle.Counter` namespace of the
listener's own: per *client* (an IPv4 address, or an IPv6 /64, because one host usually
owns a whole /64 and counting single IPv6 addresses would give it 2^64 allowances) and per
*network* (the /24 or /56 around it, allowed :data:`NETWORK_FACTOR` times as many, so a
neighbour behind the same NAT is not locked out by one guesser, but a whole block of
addresses cannot multiply the allowance either). Over either limit, every login from there
is refused, without checking the credentials, until old failures expire; successes are
never counted. Used from the event loop only, like the counter.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress

from mailsac.throttle import Counter, Limit, Limiter, ip_key, network_key

IPV6_CLIENT_PREFIX = 64
NETWORK_FACTOR = 5
"""A /24 (IPv4) or /56 (IPv6) may fail this many times as often as one client."""


class TooManyFailures(Exception):
    """The client (or its network) used up its failed-login allowance."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after:.0f} s")
        self.retry_after = retry_after


def failure_key(ip: str) -> str:
    """Where a client's failed logins are counted: the IPv4 address, or the IPv6 /64."""
    key = ip_key(ip)
    if key is None:
        return ip
    if ":" in key:
        return network_key(key, v6_prefix=IPV6_CLIENT_PREFIX) or key
    return key


def split_plain(raw: bytes) -> tuple[str, str, str]:
    """SASL PLAIN (RFC 4616 §2): ``authzid NUL authcid NUL passwd`` (raises ValueError)."""
    try:
        parts = raw.decode("utf-8").split("\0")
    except UnicodeDecodeError as exc:
        raise ValueError("the PLAIN response is not UTF-8 text") from exc
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError("the PLAIN response needs authzid NUL authcid NUL password")
    return parts[0], parts[1], parts[2]


def decode_plain(response: str) -> tuple[str, str, str]:
    """SASL PLAIN from its base64 text (raises ValueError)."""
    try:
        raw = base64.b64decode(response.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the PLAIN response is not valid base64 of UTF-8 text") from exc
    return split_plain(raw)


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 or an IPv4-mapped loopback address (never a host name)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


class LoginFailures:
    """Counts failed logins of one protocol (``"pop3"``, ``"smtp"``) per client and network.

    ``max_failures`` per client and ``max_failures * NETWORK_FACTOR`` per network in any
    ``window`` seconds.
    """

    def __init__(self, protocol: str, *, max_failures: int, window: float,
                 counter: Counter | None = None) -> None:
        self.client_limit = f"{protocol}_auth_failures"
        self.network_limit = f"{protocol}_auth_failures_network"
        self.limiter = Limiter(counter or Counter(max_entries=100_000), [
            Limit(self.client_limit, f"{protocol}_auth_fail", max_failures, window,
                  "Too many failed logins from {key}"),
            Limit(self.network_limit, f"{protocol}_auth_fail_net",
                  max_failures * NETWORK_FACTOR, window,
                  "Too many failed logins from network {key}"),
        ])

    def _events(self, ip: str) -> list[tuple[str, str | None]]:
        return [(self.client_limit, failure_key(ip)), (self.network_limit, network_key(ip))]

    def check(self, ip: str) -> None:
        """Raise :class:`TooManyFailures` while ``ip`` or its network is over its limit."""
        for name, key in self._events(ip):
            if key is None:
                continue
            decision = self.limiter.check(name, key)
            if not decision.allowed:
                raise TooManyFailures(decision.retry_after)

    def failed(self, ip: str) -> None:
        """Count one failed login of ``ip`` (against both limits)."""
        for name, key in self._events(ip):
            if key is not None:
                self.limiter.hit(name, key)
