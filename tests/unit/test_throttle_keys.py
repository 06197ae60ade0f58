"""Key derivation of mailsac.throttle: IPs, networks, organisational domains, inboxes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.throttle import (
    INVALID_DOMAIN,
    domain_of,
    inbox_key,
    ip_key,
    network_key,
    normalize_domain,
    org_domain,
)


@pytest.mark.parametrize(
    ("raw", "ip", "network"),
    [
        ("203.0.113.7", "203.0.113.7", "203.0.113.0/24"),
        (" 203.0.113.7 ", "203.0.113.7", "203.0.113.0/24"),
        ("[203.0.113.7]", "203.0.113.7", "203.0.113.0/24"),
        ("::ffff:203.0.113.7", "203.0.113.7", "203.0.113.0/24"),  # IPv4-mapped is IPv4
        ("::FFFF:cb00:7107", "203.0.113.7", "203.0.113.0/24"),
        ("2001:db8:abcd:12ff::1", "2001:db8:abcd:12ff::1", "2001:db8:abcd:1200::/56"),
        ("2001:DB8:ABCD:12FF:1:2:3:4", "2001:db8:abcd:12ff:1:2:3:4", "2001:db8:abcd:1200::/56"),
        ("[IPv6:2001:db8::1]", "2001:db8::1", "2001:db8::/56"),
        ("fe80::1%eth0", "fe80::1", "fe80::/56"),
        ("::1", "::1", "::/56"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.0/24"),
        ("", None, None),
        (None, None, None),
        ("not an ip", None, None),
        ("300.1.1.1", None, None),
        ("01.2.3.4", None, None),
        ("[", None, None),
    ],
)
def test_ip_and_network_keys(raw: str | None, ip: str | None, network: str | None) -> None:
    assert ip_key(raw) == ip
    assert network_key(raw) == network


def test_network_prefixes_are_configurable() -> None:
    assert network_key("198.51.100.77", v4_prefix=16) == "198.51.0.0/16"
    assert network_key("2001:db8:1:2::1", v6_prefix=48) == "2001:db8:1::/48"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.b.c.d.e.sandbox.example.com", "example.com"),
        ("user@a.b.c.d.e.sandbox.example.com", "example.com"),
        ("Bot <bot@M1.Sandbox.Example.COM.>", "example.com"),
        ("example.com", "example.com"),
        ("x.co.uk", "x.co.uk"),
        ("mail.x.co.uk", "x.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix keys as itself
        ("com", "com"),
        ("localhost", "localhost"),
        ("a.b.example.zzzunknown", "example.zzzunknown"),  # PSL default rule for unknown TLDs
        ("user@foo.bar.blogspot.com", "blogspot.com"),  # private suffixes collapse (ICANN only)
        ("a.b.github.io", "github.io"),
        ("user@bücher.de", "xn--bcher-kva.de"),
        ("user@www.xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("user@[192.0.2.1]", "[192.0.2.0/24]"),
        ("user@192.0.2.1", "[192.0.2.0/24]"),
        ("user@[IPv6:2001:db8::1]", "[2001:db8::/56]"),
        ("user@[garbage]", INVALID_DOMAIN),
        ("user@exa mple.com", INVALID_DOMAIN),
        ("user@a..b.com", INVALID_DOMAIN),
        ("user@-bad-.com", INVALID_DOMAIN),
        ("user@" + "a" * 64 + ".com", INVALID_DOMAIN),
        ("user@\x00\r\n.com", INVALID_DOMAIN),
        ("user@", None),
        ("", None),
        (None, None),
    ],
)
def test_org_domain(value: str | None, expected: str | None) -> None:
    assert org_domain(value) == expected


def test_private_suffixes_can_be_kept_separate() -> None:
    assert org_domain("a.b.github.io", icann_only=False) == "b.github.io"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user@Example.COM", "Example.COM"),
        ("Name <user@host.example>", "host.example"),
        ("example.org", "example.org"),
        ("weird@@x.example", "x.example"),
        ("user@", None),
        ("  ", None),
    ],
)
def test_domain_of(value: str, expected: str | None) -> None:
    assert domain_of(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        ("a" * 64 + ".com", None),
        (".".join(["abcdefghi"] * 26), None),  # 259 characters
        ("exa_mple!.com", None),
        ("", None),
    ],
)
def test_normalize_domain(value: str, expected: str | None) -> None:
    assert normalize_domain(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<Test.Inbox@Mailsac.example>", "test.inbox@mailsac.example"),
        (" someone@x.example ", "someone@x.example"),
        ("no-at-sign", None),
        ("", None),
        (None, None),
    ],
)
def test_inbox_key(value: str | None, expected: str | None) -> None:
    assert inbox_key(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_key_helpers_never_raise_on_garbage(value: str) -> None:
    for helper in (ip_key, network_key, domain_of, normalize_domain, org_domain, inbox_key):
        result = helper(value)
        assert result is None or isinstance(result, str)
    org = org_domain(value)
    assert org is None or org == INVALID_DOMAIN or org.startswith("[") or org.isascii()
