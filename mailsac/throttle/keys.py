"""Throttle key derivation: pure functions from untrusted protocol input to counter keys.

None of these raise on garbage; they return ``None`` when there is nothing to key on, and
domain helpers return :data:`INVALID_DOMAIN` for syntactically invalid domains so that all
garbage shares one bucket instead of each variant getting its own.

* Client IPs: the address itself (IPv4-mapped IPv6 such as ``::ffff:192.0.2.7`` is treated as
  IPv4; scope ids are dropped) and its network: /24 for IPv4, /56 for IPv6 (the usual size of
  one IPv6 customer site).
* Domains: the organisational (registrable) domain from the Public Suffix List shipped with
  the ``publicsuffixlist`` package (no network access). ICANN rules only by default, so
  sub-domains of free "private" suffixes (``*.duckdns.org``, ``*.blogspot.com``) collapse to
  one key: a sender minting a unique 6-level sub-domain per message still hits one counter.
  Unknown TLDs use the PSL's default rule (``a.b.example.zzz`` -> ``example.zzz``); a domain
  that is itself a public suffix (``co.uk``) or a single label (``localhost``) keys as itself.
  Address literals (``user@[192.0.2.1]``) key as their bracketed network, ``[192.0.2.0/24]``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList

IPV4_PREFIX = 24
IPV6_PREFIX = 56
INVALID_DOMAIN = "(invalid)"
"""Shared key for sender/Reply-To domains that are not syntactically valid host names."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


@cache
def _psl(icann_only: bool) -> PublicSuffixList:
    return PublicSuffixList(only_icann=icann_only)


def parse_ip(value: str | None) -> IPAddress | None:
    """Parse a client or literal address (``[..]``, ``IPv6:`` prefix, ``%zone`` tolerated)."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    text = text.split("%", 1)[0]
    if ":" not in text and not text.replace(".", "").isdigit():
        return None  # cheap pre-check: ipaddress is slow to reject host names
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def ip_key(value: str | None) -> str | None:
    """Canonical text of a client IP (``::ffff:1.2.3.4`` -> ``1.2.3.4``), or None."""
    addr = parse_ip(value)
    return None if addr is None else str(addr)


def network_key(
    value: str | None, *, v4_prefix: int = IPV4_PREFIX, v6_prefix: int = IPV6_PREFIX
) -> str | None:
    """The client's network in CIDR form: ``203.0.113.7`` -> ``203.0.113.0/24``."""
    addr = parse_ip(value)
    if addr is None:
        return None
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network((addr, prefix), strict=False))


def domain_of(address: str | None) -> str | None:
    """The domain part of an e-mail address (``Name <u@Host.Example>`` -> ``Host.Example``).

    A value without ``@`` is taken to be a domain already. Returns None when empty.
    """
    if not address:
        return None
    text = address.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    domain = text.rpartition("@")[2].strip().rstrip(".")
    return domain or None


def normalize_domain(value: str | None) -> str | None:
    """Lower-case, IDNA-encoded (punycode) host name, or None if it is not a valid one."""
    if not value:
        return None
    domain = value.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not 0 < len(domain) <= 253:
        return None
    return domain if _HOSTNAME.fullmatch(domain) else None


def org_domain(value: str | None, *, icann_only: bool = True) -> str | None:
    """Organisational domain of an address or domain: ``u@a.b.sandbox.example.com`` ->
    ``example.com``. None for empty input, :data:`INVALID_DOMAIN` for garbage."""
    domain = domain_of(value)
    if domain is None:
        return None
    if domain.startswith("[") or parse_ip(domain) is not None:
        net = network_key(domain)
        return INVALID_DOMAIN if net is None else f"[{net}]"
    normalized = normalize_domain(domain)
    if normalized is None:
        return INVALID_DOMAIN
    return _registrable(normalized, icann_only)


@lru_cache(maxsize=4096)
def _registrable(domain: str, icann_only: bool) -> str:
    try:
        private = _psl(icann_only).privatesuffix(domain)
    except Exception:  # pragma: no cover - defensive: the PSL library must never break intake
        private = None
    return private if isinstance(private, str) else domain


def inbox_key(address: str | None) -> str | None:
    """Recipient inbox key: the lower-cased address without angle brackets, or None."""
    if not address:
        return None
    text = address.strip().strip("<>").strip().lower()
    return text if "@" in text else None
