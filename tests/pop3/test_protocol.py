"""Protocol behaviour: CAPA, bad and over-long commands, pipelining, STLS."""

from __future__ import annotations

import poplib
import ssl
from collections.abc import Callable

import pytest

from tests.helpers import ServerHandle, deliver, unique_inbox
from tests.pop3.conftest import Dialog, Pop3Server

BASE_CAPS = {"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL",
             "IMPLEMENTATION"}


def test_capa(pop3_server: Pop3Server, pop: Callable[[], poplib.POP3]) -> None:
    session = pop()
    caps = session.capa()
    expected = BASE_CAPS | ({"STLS"} if pop3_server.cert else set())
    assert set(caps) == expected
    assert caps["SASL"] == ["PLAIN"] and caps["IMPLEMENTATION"] == ["mailsac"]


def test_capa_after_login_drops_login_capabilities(
    server: ServerHandle, pop: Callable[[], poplib.POP3]
) -> None:
    session = pop()
    session.user(unique_inbox())
    session.pass_(server.key)
    caps = session.capa()
    assert {"TOP", "UIDL", "PIPELINING", "RESP-CODES"} <= set(caps)
    assert not {"USER", "SASL", "STLS"} & set(caps)


def test_greeting(dialog: Callable[[], Dialog]) -> None:
    assert dialog().greeting == "+OK mx.mailsac.test mailsac POP3 server ready"


@pytest.mark.parametrize("line", [
    b"FOO", b"", b"   ", b"RETRIEVE 1", b"\xff\xfe", b"USER", b"USER a@x.test b@x.test",
])
def test_bad_commands_get_err(dialog: Callable[[], Dialog], line: bytes) -> None:
    d = dialog()
    assert d.cmd(line).startswith("-ERR ")
    assert d.cmd("NOOP").startswith("-ERR")  # NOOP needs a login; the session lives on
    assert d.cmd("CAPA").startswith("+OK")


def test_bad_message_numbers(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    d = dialog()
    d.cmd(f"USER {inbox}")
    d.cmd(f"PASS {server.key}")
    for command in ("RETR", "RETR 0", "RETR 2", "RETR x", "RETR 1 2", "DELE ١",
                    "TOP 1", "TOP 1 x", "LIST 99999999999999"):  # 9: one short of the limit
        assert d.cmd(command).startswith("-ERR"), command
    assert d.cmd("RETR 1").startswith("+OK")
    d.block()
    assert d.cmd("UIDL -1").endswith("too many bad commands, closing connection")
    assert d.closed()


def test_too_many_bad_commands_disconnect(dialog: Callable[[], Dialog]) -> None:
    d = dialog()
    for _ in range(9):
        assert d.cmd("BOGUS").startswith("-ERR unknown command")
    assert d.cmd("BOGUS").endswith("too many bad commands, closing connection")
    assert d.closed()


def test_line_too_long(dialog: Callable[[], Dialog]) -> None:
    d = dialog()
    assert d.cmd("NOOP " + "x" * 600) == "-ERR line too long"
    assert d.cmd("USER " + "y" * 100_000) == "-ERR line too long"  # past the buffer limit
    assert d.cmd("CAPA").startswith("+OK")  # the rest of the long line was not a command


def test_pipelining(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    deliver(server, inbox)
    d = dialog()
    d.send(f"USER {inbox}\r\nPASS {server.key}\r\nSTAT\r\nUIDL\r\nDELE 1\r\nSTAT\r\nRSET\r\n"
           "QUIT\r\n")
    assert d.line().startswith("+OK")
    assert d.line().startswith("+OK")
    assert d.line().startswith("+OK 2 ")
    assert d.line().startswith("+OK")
    assert len(d.block()) == 2
    assert d.line() == "+OK message 1 deleted"
    assert d.line().startswith("+OK 1 ")
    assert d.line().startswith("+OK maildrop has 2 messages")
    assert d.line().startswith("+OK")
    assert d.closed()


def test_stls(pop3_server: Pop3Server, server: ServerHandle) -> None:
    if pop3_server.cert is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    inbox = unique_inbox()
    deliver(server, inbox)
    context = ssl.create_default_context(cafile=str(pop3_server.cert))
    session = poplib.POP3("127.0.0.1", pop3_server.port, timeout=30)
    try:
        assert session.stls(context).startswith(b"+OK")
        assert "STLS" not in session.capa()
        session.user(inbox)
        session.pass_(server.key)
        assert session.stat()[0] == 1
        assert b"Subject: Hello" in b"\r\n".join(session.retr(1)[1])
        session.quit()
    finally:
        session.close()


def test_stls_twice_and_plaintext_after_stls_is_discarded(pop3_server: Pop3Server) -> None:
    if pop3_server.cert is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    d = Dialog(pop3_server.port)
    try:
        # RFC 2595 §4: a command pipelined behind STLS must not be run inside TLS.
        d.send(b"STLS\r\nUSER injected@example.test\r\n")
        assert d.line() == "+OK begin TLS negotiation"
        context = ssl.create_default_context(cafile=str(pop3_server.cert))
        tls = context.wrap_socket(d.sock, server_hostname="127.0.0.1")
        reader = tls.makefile("rb")
        tls.sendall(b"PASS whatever\r\n")
        assert reader.readline().startswith(b"-ERR send USER first")
        tls.sendall(b"STLS\r\n")
        assert reader.readline().startswith(b"-ERR")
        reader.close()
        tls.close()
    finally:
        d.close()
