"""In-memory deny-list of client IPs, CIDR networks (IPv4 and IPv6) and sender domains.

Entries are plain frozen dataclasses with a canonical ``value`` (``203.0.113.7``,
``2001:db8::/32``, ``example.com``) so they can be stored in a table and reloaded with
``DenyList(entries)``. Lookups never scan the entries:

* IPs and networks live in one dict per (IP version, prefix length); ``match_ip`` probes the
  prefix lengths in use, longest first, so at most 33 (IPv4) or 129 (IPv6) dict probes.
  IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) are looked up as IPv4.
* A listed domain also matches all its sub-domains: ``match_domain`` probes the name and each
  parent (``a.b.example.com``, ``b.example.com``, ``example.com``, ``com``), most specific
  first, so at most ~127 probes.

Pure and synchronous; not thread-safe (event loop only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mailsac.throttle.keys import IPAddress, domain_of, normalize_domain, parse_ip

EntryKind = Literal["ip", "network", "domain"]


@dataclass(frozen=True, slots=True)
class DenyEntry:
    """One deny-list row: ``kind`` ip/network/domain, canonical ``value``, and a ``reason``."""

    kind: EntryKind
    value: str
    reason: str = ""


def canonical_entry(value: str, reason: str = "") -> DenyEntry:
    """Parse an IP, CIDR network or domain (``*.`` / leading dot allowed) into an entry.

    A network with a full-length prefix (``/32``, ``/128``) becomes an ``ip`` entry; host bits
    of a network are cleared (``192.0.2.7/24`` -> ``192.0.2.0/24``). Raises ``ValueError``.
    """
    text = value.strip()
    addr = parse_ip(text)
    if addr is not None:
        return DenyEntry("ip", str(addr), reason)
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise ValueError(f"not an IP network: {value!r}") from exc
        if net.prefixlen == net.max_prefixlen:
            return canonical_entry(str(net.network_address), reason)
        return DenyEntry("network", str(net), reason)
    domain = normalize_domain(text.removeprefix("*").lstrip("."))
    if domain is None:
        raise ValueError(f"not an IP, network or domain: {value!r}")
    return DenyEntry("domain", domain, reason)


class DenyList:
    """Deny-list with O(1)/O(prefix lengths) lookups; see the module docstring."""

    def __init__(self, entries: Iterable[DenyEntry] = ()) -> None:
        # (version, prefix length) -> {network address as int: entry}
        self._nets: dict[tuple[int, int], dict[int, DenyEntry]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        self._domains: dict[str, DenyEntry] = {}
        for entry in entries:
            self.add(entry.value, entry.reason)

    def __len__(self) -> int:
        return len(self._domains) + sum(len(group) for group in self._nets.values())

    def add(self, value: str, reason: str = "") -> DenyEntry:
        """Add (or replace the reason of) an IP, network or domain; returns the stored entry."""
        entry = canonical_entry(value, reason)
        if entry.kind == "domain":
            self._domains[entry.value] = entry
            return entry
        net = ipaddress.ip_network(entry.value)
        slot = (net.version, net.prefixlen)
        if slot not in self._nets:
            self._nets[slot] = {}
            lengths = self._lengths[net.version]
            lengths.append(net.prefixlen)
            lengths.sort(reverse=True)
        self._nets[slot][int(net.network_address)] = entry
        return entry

    def remove(self, value: str) -> bool:
        """Remove the entry for ``value`` (any spelling of it); False if it was not listed."""
        try:
            entry = canonical_entry(value)
        except ValueError:
            return False
        if entry.kind == "domain":
            return self._domains.pop(entry.value, None) is not None
        net = ipaddress.ip_network(entry.value)
        slot = (net.version, net.prefixlen)
        group = self._nets.get(slot)
        if group is None or group.pop(int(net.network_address), None) is None:
            return False
        if not group:
            del self._nets[slot]
            self._lengths[net.version].remove(net.prefixlen)
        return True

    def match_ip(self, ip: str | IPAddress | None) -> DenyEntry | None:
        """The most specific IP or network entry containing ``ip``, or None (also for garbage)."""
        addr = parse_ip(ip) if isinstance(ip, str | None) else ip
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr is None:
            return None
        value, bits = int(addr), addr.max_prefixlen
        for length in self._lengths[addr.version]:
            shift = bits - length
            entry = self._nets[(addr.version, length)].get(value >> shift << shift)
            if entry is not None:
                return entry
        return None

    def match_domain(self, domain: str | None) -> DenyEntry | None:
        """The most specific domain entry equal to or a parent of ``domain`` (an address is
        accepted too; an address literal ``[192.0.2.1]`` is matched against IPs)."""
        name = domain_of(domain)
        if name is None:
            return None
        if name.startswith("[") or parse_ip(name) is not None:
            return self.match_ip(name)
        normalized = normalize_domain(name)
        if normalized is None or not self._domains:
            return None
        labels = normalized.split(".")
        for start in range(len(labels)):
            entry = self._domains.get(".".join(labels[start:]))
            if entry is not None:
                return entry
        return None

    def entries(self) -> list[DenyEntry]:
        """All entries: domains, then IPs and networks, each sorted by value."""
        nets = [entry for group in self._nets.values() for entry in group.values()]
        return sorted(self._domains.values(), key=lambda e: e.value) + sorted(
            nets, key=lambda e: (e.kind, e.value)
        )
