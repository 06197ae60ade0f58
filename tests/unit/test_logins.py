"""Failed-login limits shared by POP3 and SMTP AUTH, and where SMTP AUTH is offered."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import Session

from mailsac.listeners.logins import (
    NETWORK_FACTOR,
    LoginFailures,
    TooManyFailures,
    decode_plain,
    split_plain,
)
from mailsac.smtp.auth import SmtpAuth


def test_failures_are_limited_per_client() -> None:
    failures = LoginFailures("test", max_failures=2, window=600)
    for _ in range(2):
        failures.check("192.0.2.1")
        failures.failed("192.0.2.1")
    with pytest.raises(TooManyFailures) as refused:
        failures.check("192.0.2.1")
    assert 0 < refused.value.retry_after <= 600
    failures.check("192.0.2.2")  # a neighbour is not locked out by one guesser
    for _ in range(2):  # one IPv6 host owns its /64: it cannot rotate addresses
        failures.failed("2001:db8:1:2::1")
    with pytest.raises(TooManyFailures):
        failures.check("2001:db8:1:2:ffff::9")
    failures.check("2001:db8:1:3::1")


def test_failures_are_limited_per_network() -> None:
    failures = LoginFailures("test", max_failures=2, window=600)
    for host in range(1, NETWORK_FACTOR + 1):  # every client stays within its own limit
        failures.failed(f"198.51.100.{host}")
        failures.failed(f"198.51.100.{host}")
    with pytest.raises(TooManyFailures):
        failures.check("198.51.100.200")  # but the /24 used up its allowance
    failures.check("198.51.101.1")


def test_sasl_plain_parsing() -> None:
    assert split_plain(b"\0user\0pass") == ("", "user", "pass")
    assert decode_plain("YXV0aHoAdXNlcgBwYXNz") == ("authz", "user", "pass")
    for bad in (b"user\0pass", b"\0\0pass", b"\0user\0", b"\xff\0user\0pass"):
        with pytest.raises(ValueError):
            split_plain(bad)
    with pytest.raises(ValueError):
        decode_plain("not*base64")


@pytest.mark.parametrize(("mode", "peer", "tls", "offered"), [
    ("never", "127.0.0.1", False, False),
    ("never", "127.0.0.1", True, True),
    ("loopback", "127.0.0.1", False, True),
    ("loopback", "::1", False, True),
    ("loopback", "::ffff:127.0.0.1", False, True),
    ("loopback", "192.0.2.7", False, False),
    ("loopback", "192.0.2.7", True, True),
    ("always", "192.0.2.7", False, True),
])
def test_auth_is_offered_under_tls_or_where_plaintext_is_allowed(
    mode: str, peer: str, tls: bool, offered: bool
) -> None:
    auth = SmtpAuth(None, LoginFailures("t", max_failures=1, window=1),  # type: ignore[arg-type]
                    plaintext=mode)
    loop = asyncio.new_event_loop()
    try:
        session = Session(loop)
        session.peer = (peer, 25000)  # type: ignore[assignment]
        session.ssl = {"cipher": "TLS_AES_128_GCM_SHA256"} if tls else None
        assert auth.offered(session) is offered
    finally:
        loop.close()


def test_unknown_plaintext_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        SmtpAuth(None, LoginFailures("t", max_failures=1, window=1),  # type: ignore[arg-type]
                 plaintext="sometimes")
