"""Host-name helpers for spam features: registrable domains, TLDs, IP literals.

Uses the offline Public Suffix List shipped by ``publicsuffixlist`` when it is installed;
otherwise a small heuristic (last two labels, three under well-known second-level
suffixes such as ``co.uk``) that agrees with the PSL for the common cases.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["is_ip", "registrable_domain", "tld"]

_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "or", "ne", "go"})


def _heuristic(host: str) -> str | None:
    labels = host.split(".")
    if len(labels) < 2:
        return None
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _load_psl() -> Callable[[str], str | None]:
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError:  # pragma: no cover - depends on the environment
        return _heuristic
    psl = PublicSuffixList()

    def private(host: str) -> str | None:
        result = psl.privatesuffix(host)
        return result if isinstance(result, str) else None

    return private


_PRIVATE_SUFFIX = _load_psl()


def is_ip(host: str) -> bool:
    """True for IPv4 dotted quads and bracketed or bare IPv6 literals."""
    if _IPV4.match(host):
        return True
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            return False
        return True
    return False


def _clean(host: str) -> str:
    return host.strip().strip(".").lower()


@lru_cache(maxsize=8192)
def registrable_domain(host: str) -> str:
    """``www.news.example.co.uk`` -> ``example.co.uk``; IPs -> ``"ip"``; junk -> ``""``."""
    host = _clean(host)
    if not host or len(host) > 253:
        return ""
    if is_ip(host):
        return "ip"
    return _PRIVATE_SUFFIX(host) or ""


def tld(host: str) -> str:
    """The last label of a host name (``""`` for IPs and single-label names)."""
    host = _clean(host)
    if not host or is_ip(host) or "." not in host:
        return ""
    return host.rsplit(".", 1)[1][:24]
