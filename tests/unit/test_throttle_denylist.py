"""Deny-list of mailsac.throttle: IPs, CIDR networks (v4/v6), domains with sub-domains."""

from __future__ import annotations

import ipaddress

import pytest

from mailsac.throttle import DenyEntry, DenyList, canonical_entry


@pytest.fixture
def deny() -> DenyList:
    deny = DenyList()
    deny.add("203.0.113.7", "flooder")
    deny.add("198.51.100.0/24", "bad network")
    deny.add("198.51.0.0/16", "bad provider")
    deny.add("2001:db8:bad::/48", "bad v6 site")
    deny.add("2001:db8:bad:1::5", "one v6 host")
    deny.add("spam.example", "spam domain")
    deny.add("*.wild.example", "wildcard spelling")
    return deny


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("203.0.113.7", "flooder"),
        ("::ffff:203.0.113.7", "flooder"),  # IPv4-mapped IPv6
        ("203.0.113.8", None),
        ("198.51.100.255", "bad network"),  # most specific network wins
        ("198.51.101.1", "bad provider"),
        ("198.52.0.1", None),
        ("2001:db8:bad:ffff::1", "bad v6 site"),
        ("2001:db8:bad:1::5", "one v6 host"),
        ("2001:DB8:BAD:1:0:0:0:5", "one v6 host"),
        ("2001:db8:bae::1", None),
        ("[203.0.113.7]", "flooder"),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_match_ip(deny: DenyList, ip: str | None, reason: str | None) -> None:
    entry = deny.match_ip(ip)
    assert (entry.reason if entry else None) == reason


def test_match_ip_accepts_address_objects(deny: DenyList) -> None:
    entry = deny.match_ip(ipaddress.ip_address("::ffff:198.51.100.1"))
    assert entry is not None and entry.value == "198.51.100.0/24"


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("spam.example", "spam domain"),
        ("a.b.c.SPAM.example.", "spam domain"),  # sub-domains match
        ("bot@mx.spam.example", "spam domain"),
        ("Bot <bot@spam.example>", "spam domain"),
        ("notspam.example", None),  # a suffix that is not a label boundary
        ("example", None),
        ("x.wild.example", "wildcard spelling"),
        ("user@[203.0.113.7]", "flooder"),  # address literals are matched as IPs
        ("user@exa mple.com", None),
        ("", None),
        (None, None),
    ],
)
def test_match_domain(deny: DenyList, domain: str | None, reason: str | None) -> None:
    entry = deny.match_domain(domain)
    assert (entry.reason if entry else None) == reason


def test_most_specific_domain_wins() -> None:
    deny = DenyList()
    deny.add("example", "whole tld")
    deny.add("bad.example", "specific")
    assert deny.match_domain("x.bad.example") == DenyEntry("domain", "bad.example", "specific")
    assert deny.match_domain("good.example") == DenyEntry("domain", "example", "whole tld")


def test_remove(deny: DenyList) -> None:
    assert deny.remove("198.51.100.0/24")
    assert deny.match_ip("198.51.100.1") == DenyEntry("network", "198.51.0.0/16", "bad provider")
    assert deny.remove("198.51.0.0/16")
    assert deny.match_ip("198.51.100.1") is None
    assert deny.remove("::ffff:203.0.113.7")  # any spelling of a listed IP
    assert deny.match_ip("203.0.113.7") is None
    assert deny.remove("SPAM.example.")
    assert deny.match_domain("x.spam.example") is None
    assert not deny.remove("spam.example")
    assert not deny.remove("192.0.2.0/24")
    assert not deny.remove("not valid!")
    assert len(deny) == 3


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("192.0.2.1", DenyEntry("ip", "192.0.2.1")),
        ("192.0.2.1/32", DenyEntry("ip", "192.0.2.1")),
        ("192.0.2.77/24", DenyEntry("network", "192.0.2.0/24")),  # host bits cleared
        ("2001:DB8::/32", DenyEntry("network", "2001:db8::/32")),
        ("2001:db8::1/128", DenyEntry("ip", "2001:db8::1")),
        ("::ffff:192.0.2.1", DenyEntry("ip", "192.0.2.1")),
        (" Example.COM. ", DenyEntry("domain", "example.com")),
        (".example.com", DenyEntry("domain", "example.com")),
        ("*.example.com", DenyEntry("domain", "example.com")),
    ],
)
def test_canonical_entry(value: str, entry: DenyEntry) -> None:
    assert canonical_entry(value) == entry


@pytest.mark.parametrize("value", ["", "not a domain!", "192.0.2.0/33", "1.2.3.4/x", "a..b"])
def test_canonical_entry_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        canonical_entry(value)


def test_entries_round_trip_and_replace(deny: DenyList) -> None:
    entries = deny.entries()
    assert len(entries) == len(deny) == 7
    assert entries[0] == DenyEntry("domain", "spam.example", "spam domain")
    reloaded = DenyList(entries)
    assert reloaded.entries() == entries
    reloaded.add("203.0.113.7", "new reason")
    assert len(reloaded) == 7
    assert reloaded.match_ip("203.0.113.7") == DenyEntry("ip", "203.0.113.7", "new reason")


def test_many_networks_lookup_uses_prefix_groups() -> None:
    deny = DenyList()
    for i in range(256):
        deny.add(f"10.{i}.0.0/16", f"net {i}")
        deny.add(f"2001:db8:{i:x}::/48", f"v6 {i}")
    assert len(deny._lengths[4]) == 1 and len(deny._lengths[6]) == 1
    entry = deny.match_ip("10.200.3.4")
    assert entry is not None and entry.reason == "net 200"
    entry = deny.match_ip("2001:db8:c8::1")
    assert entry is not None and entry.reason == "v6 200"
    assert deny.match_ip("11.0.0.1") is None
