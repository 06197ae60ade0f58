"""Failed-login limit and delay, admission, autologout and shutdown, on dedicated servers."""

from __future__ import annotations

import contextlib
import poplib
import re
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    log_failures,
    stop_server,
    unique_inbox,
)
from tests.pop3.conftest import (
    Dialog,
    Pop3Server,
    admitted_dialogs,
    plain,
    start_pop3_server,
    stop_pop3_server,
)

DELAY = 0.3
IDLE = 1.5


@pytest.fixture(scope="module")
def strict(database_url: str) -> Iterator[Pop3Server]:
    """Three failed logins per IP, a noticeable delay, four sessions per IP, 1.5 s idle."""
    started = start_pop3_server({
        "DATABASE_URL": database_url, "MAILSAC_POP3_AUTH_FAILURES": "3",
        "MAILSAC_POP3_AUTH_DELAY": str(DELAY), "MAILSAC_POP3_TIMEOUT": str(IDLE),
        "MAILSAC_MAX_CONNECTIONS_PER_IP": "4", "MAILSAC_ADMISSION_TIMEOUT": "0.3"})
    yield started
    stop_pop3_server(started)


def test_stls_with_the_generated_certificate(strict: Pop3Server) -> None:
    """No MAILSAC_TLS_*: STLS uses the certificate generated for all listeners, and
    loopback clients may still log in without it (MAILSAC_POP3_PLAINTEXT_LOOPBACK)."""
    assert strict.cert is None
    d = Dialog(strict.port)
    try:
        assert d.cmd("CAPA").startswith("+OK")
        assert {b"STLS\r\n", b"USER\r\n"} <= set(d.block())
    finally:
        d.close()
    inbox = unique_inbox()
    deliver(strict.handle, inbox, subject="read over STLS")
    context = ssl.create_default_context(cafile=str(strict.trusted))
    session = poplib.POP3("localhost", strict.port, timeout=30)
    try:
        assert session.stls(context).startswith(b"+OK")  # verifies the name "localhost"
        session.user(inbox)
        session.pass_(strict.handle.key)
        assert session.stat()[0] == 1
        assert b"Subject: read over STLS" in b"\r\n".join(session.retr(1)[1])
        session.quit()
    finally:
        session.close()
    untrusting = poplib.POP3("localhost", strict.port, timeout=30)
    try:  # a client that does not trust it: one INFO line, no ERROR with a traceback
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.stls(ssl.create_default_context())
    finally:
        with contextlib.suppress(OSError):  # the failed handshake closed the socket
            untrusting.close()
    deadline = time.monotonic() + 30
    while "POP3 TLS handshake with" not in strict.handle.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    failed = [line for line in strict.handle.log().splitlines()
              if "TLS handshake with" in line]
    assert failed and all(" INFO " in line for line in failed), failed
    assert not log_failures(strict.handle.log(), levels=())


def test_admission_caps_sessions_per_ip(strict: Pop3Server) -> None:
    held = admitted_dialogs(strict.port, 4)
    try:
        assert all(d.greeting.startswith("+OK") for d in held)
        refused = Dialog(strict.port)  # waits MAILSAC_ADMISSION_TIMEOUT for a slot
        assert refused.greeting.startswith("-ERR [SYS/TEMP] too many connections")
        assert refused.closed()
        refused.close()
        leaving = held.pop()
        assert leaving.cmd("QUIT").startswith("+OK")  # a slot comes free
        leaving.close()
        (admitted,) = admitted_dialogs(strict.port)
        assert admitted.greeting.startswith("+OK")
        held.append(admitted)
    finally:
        for d in held:
            d.close()


def test_idle_session_is_closed_without_a_response(strict: Pop3Server) -> None:
    started = time.monotonic()  # the server's idle clock starts no earlier than this
    (d,) = admitted_dialogs(strict.port)
    try:
        assert d.closed()  # RFC 1939 §3: the autologout timer closes silently
        assert time.monotonic() - started >= IDLE - 0.2
    finally:
        d.close()


def test_failed_logins_are_delayed_then_limited_per_ip(strict: Pop3Server) -> None:
    handle = strict.handle
    inbox = unique_inbox()
    deliver(handle, inbox)
    session = poplib.POP3("127.0.0.1", strict.port, timeout=30)
    try:
        for _ in range(3):
            session.user(inbox)
            started = time.monotonic()
            with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
                session.pass_("k_wrongwrongwrongwrongwrong0")
            assert time.monotonic() - started >= DELAY
        session.user(inbox)
        with pytest.raises(poplib.error_proto) as refused:
            session.pass_(handle.key)  # even the right key: the IP is over its limit
        text = refused.value.args[0].decode()
        match = re.fullmatch(r"-ERR \[SYS/TEMP\] too many failed logins, try again in (\d+) s",
                             text)
        assert match and 1 <= int(match.group(1)) <= 600, text
        with pytest.raises((poplib.error_proto, OSError)):
            session.noop()  # the server hung up
    finally:
        session.close()
    again = Dialog(strict.port)  # a new connection from the same IP is refused too
    try:
        assert again.cmd(f"AUTH PLAIN {plain(inbox, handle.key)}").startswith(
            "-ERR [SYS/TEMP] too many failed logins")
        assert again.closed()
    finally:
        again.close()


def test_shutdown_closes_sessions_without_deleting(
    database_url: str, server: ServerHandle
) -> None:
    own = start_pop3_server({"DATABASE_URL": database_url})
    inbox = unique_inbox()
    deliver(own.handle, inbox)
    logged_in, idle = Dialog(own.port), Dialog(own.port)
    try:
        logged_in.cmd(f"USER {inbox}")
        assert logged_in.cmd(f"PASS {own.handle.key}").startswith("+OK")
        assert logged_in.cmd("DELE 1").startswith("+OK")
        assert stop_server(own.handle) == 0, own.handle.log()
        for d in (logged_in, idle):
            assert d.line() == "-ERR [SYS/TEMP] mailsac is shutting down, try again later"
            assert d.closed()
    finally:
        logged_in.close()
        idle.close()
    with client(server, server.key) as api:  # another server process, same database
        assert len(api.get(f"/api/addresses/{inbox}/messages").json()) == 1
