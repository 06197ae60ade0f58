"""Issue 14 (findings 8 and 15): POP3 deny-list, STLS before credentials, failure counting
per IPv6 /64, a login deadline, an absolute session lifetime and pre-login slot caps.

One dedicated server with TLS configured and plaintext logins *not* allowed on loopback,
on a database of its own (the deny-list lives in the database and must not reach the
session server).
"""

from __future__ import annotations

import poplib
import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from mailsac.pop3.login import failure_key
from tests.helpers import deliver, unique_inbox
from tests.pop3.conftest import (
    Dialog,
    Pop3Server,
    admitted_dialogs,
    plain,
    start_pop3_server,
    stop_pop3_server,
)

LOGIN_TIMEOUT = 1.5
LIFETIME = 4.0
PRELOGIN_PER_IP = 3


@pytest.fixture(scope="module")
def hardened(database_url: str) -> Iterator[Pop3Server]:
    own_db = database_url.replace("/mailsac_test?", "/mailsac_pop3_hardening?")
    assert own_db != database_url
    started = start_pop3_server({
        "DATABASE_URL": own_db, "TLS": "1", "MAILSAC_POP3_AUTH_DELAY": "0.05",
        "MAILSAC_POP3_PLAINTEXT_LOOPBACK": "false",  # the default allows loopback logins
        "MAILSAC_POP3_LOGIN_TIMEOUT": str(LOGIN_TIMEOUT),
        "MAILSAC_POP3_MAX_SESSION_SECONDS": str(LIFETIME),
        "MAILSAC_POP3_PRELOGIN_PER_IP": str(PRELOGIN_PER_IP)})
    if started.cert is None:
        stop_pop3_server(started)
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    yield started
    stop_pop3_server(started)


def _context(server: Pop3Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def _login_over_tls(server: Pop3Server, inbox: str) -> poplib.POP3:
    session = poplib.POP3("127.0.0.1", server.port, timeout=30)
    session.stls(_context(server))
    session.user(inbox)
    session.pass_(server.handle.key)
    return session


def _login_once_admitted(server: Pop3Server, inbox: str) -> poplib.POP3:
    """_login_over_tls, tried again while 127.0.0.1 is still over its pre-login cap."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return _login_over_tls(server, inbox)
        except poplib.error_proto as refused:
            if b"too many connections" not in refused.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _dialog_from(server: Pop3Server, source: str) -> Dialog:
    """A raw dialog whose connection comes from another loopback address."""
    d = Dialog.__new__(Dialog)
    d.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                      source_address=(source, 0))
    d.file = d.sock.makefile("rb")
    d.greeting = d.line()
    return d


def test_no_credentials_before_stls(hardened: Pop3Server) -> None:
    inbox = unique_inbox()
    deliver(hardened.handle, inbox, subject="over TLS only")
    d = Dialog(hardened.port)
    try:
        assert d.cmd("CAPA").startswith("+OK")
        caps = {line.decode().strip() for line in d.block()}
        assert "STLS" in caps and "USER" not in caps and "SASL PLAIN" not in caps
        for command in (f"USER {inbox}", "PASS " + hardened.handle.key,
                        "AUTH PLAIN " + plain(inbox, hardened.handle.key), "AUTH"):
            reply = d.cmd(command)
            assert reply.startswith("-ERR [AUTH]") and "use STLS first" in reply, reply
    finally:
        d.close()
    session = _login_over_tls(hardened, inbox)  # after STLS everything works
    try:
        assert session.stat()[0] == 1
        assert "USER" not in session.capa()  # logged in: no login commands any more
    finally:
        session.quit()


def test_deny_listed_ip_is_refused_at_connect(hardened: Pop3Server) -> None:
    with httpx.Client(base_url=hardened.handle.http_url, timeout=30,
                      headers={"Mailsac-Key": hardened.handle.key}) as admin:
        added = admin.post("/api/admin/deny-list",
                           json={"value": "127.0.0.2", "reason": "pop3 test"})
        assert added.status_code == 200, added.text
        try:
            denied = _dialog_from(hardened, "127.0.0.2")
            try:
                assert denied.greeting.startswith("-ERR [SYS/PERM] connections from "
                                                  "127.0.0.2 are refused: pop3 test")
                assert denied.closed()
            finally:
                denied.close()
            allowed = Dialog(hardened.port)  # everyone else is unaffected
            assert allowed.greeting.startswith("+OK")
            allowed.close()
        finally:
            assert admin.delete("/api/admin/deny-list/127.0.0.2").status_code == 204
    again = _dialog_from(hardened, "127.0.0.2")  # effective at once both ways
    try:
        assert again.greeting.startswith("+OK")
    finally:
        again.close()


def test_prelogin_sessions_are_capped_per_ip(hardened: Pop3Server) -> None:
    held = admitted_dialogs(hardened.port, PRELOGIN_PER_IP)
    try:
        assert all(d.greeting.startswith("+OK") for d in held)
        refused = Dialog(hardened.port)  # refused at once, no waiting
        assert refused.greeting.startswith("-ERR [SYS/TEMP] too many connections from "
                                           "127.0.0.1 that have not logged in")
        refused.close()
        other = _dialog_from(hardened, "127.0.0.3")  # another IP is not affected
        assert other.greeting.startswith("+OK")
        other.close()
    finally:
        for d in held:
            d.close()
    session = _login_once_admitted(hardened, unique_inbox())  # slots free up a moment later
    try:  # a logged-in session does not count: every pre-login slot comes free again
        assert _all_prelogin_slots_admitted(hardened)
    finally:
        session.quit()


def _all_prelogin_slots_admitted(server: Pop3Server) -> bool:
    """Whether PRELOGIN_PER_IP sessions from 127.0.0.1 can all be greeted at once."""
    fresh = admitted_dialogs(server.port, PRELOGIN_PER_IP)
    for d in fresh:
        d.close()
    return all(d.greeting.startswith("+OK") for d in fresh)


def test_login_deadline_closes_chatty_unauthenticated_sessions(hardened: Pop3Server) -> None:
    (d,) = admitted_dialogs(hardened.port)
    try:
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < LOGIN_TIMEOUT + 5:  # keeps the session busy
            last = d.cmd("CAPA")
            if not last.startswith("+OK"):
                break
            d.block()
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert last.startswith("-ERR login timeout"), last
        assert LOGIN_TIMEOUT - 0.3 <= elapsed < LOGIN_TIMEOUT + 3
        assert d.closed()
    finally:
        d.close()


def test_session_lifetime_is_absolute(hardened: Pop3Server) -> None:
    started = time.monotonic()  # before connecting: the server's clock starts there
    session = _login_over_tls(hardened, unique_inbox())
    try:
        with pytest.raises(poplib.error_proto) as ended:
            while time.monotonic() - started < LIFETIME + 8:
                session.noop()  # never idle, yet the session ends
                time.sleep(0.2)
        assert b"session time limit reached" in ended.value.args[0]
        assert LIFETIME - 1 <= time.monotonic() - started < LIFETIME + 5
    finally:
        session.close()


def test_failures_are_counted_per_ipv6_64_and_per_ipv4_address() -> None:
    assert failure_key("2001:db8:1:2::1") == failure_key("2001:db8:1:2:ffff::7") \
        == "2001:db8:1:2::/64"
    assert failure_key("2001:db8:1:3::1") != failure_key("2001:db8:1:2::1")
    assert failure_key("192.0.2.7") == "192.0.2.7" != failure_key("192.0.2.8")
    assert failure_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert failure_key("fe80::1%eth0") == "fe80::/64"
