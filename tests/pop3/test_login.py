"""Who may open which maildrop: the HTTP API's visibility rules, over USER/PASS and AUTH."""

from __future__ import annotations

import poplib
from collections.abc import Callable

import pytest

from tests.helpers import ServerHandle, client, deliver, new_account, unique_inbox
from tests.pop3.conftest import Dialog, plain

Connect = Callable[[], poplib.POP3]


def reserve(server: ServerHandle, key: str, inbox: str) -> None:
    with client(server, key) as api:
        reserved = api.post(f"/api/addresses/{inbox}")
        assert reserved.status_code == 200, reserved.text


def login(pop: Connect, user: str, key: str) -> poplib.POP3:
    session = pop()
    session.user(user)
    session.pass_(key)
    return session


def test_public_inbox_opens_with_any_valid_key(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="public")
    _, other_key = new_account(server, "popany")
    for key in (server.key, other_key):
        session = pop()
        assert session.user(inbox).startswith(b"+OK")
        reply = session.pass_(key)
        assert reply.startswith(b"+OK") and b"1 messages" in reply
        assert session.stat()[0] == 1
        session.quit()


def test_user_is_normalised_like_the_api(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    local, domain = inbox.split("@")
    session = login(pop, f"{local.upper()}+tag@{domain.upper()}", server.key)
    assert session.stat()[0] == 1


def test_private_inbox_only_with_its_accounts_keys(server: ServerHandle, pop: Connect) -> None:
    _, owner_key = new_account(server, "popowner")
    _, other_key = new_account(server, "popother")
    inbox = unique_inbox()
    reserve(server, owner_key, inbox)
    deliver(server, inbox, subject="private")
    assert login(pop, inbox, owner_key).stat()[0] == 1
    for key in (other_key, server.key):  # another account's key, even an admin one
        session = pop()
        session.user(inbox)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            session.pass_(key)


def test_wrong_key_is_refused_and_the_session_may_retry(
    server: ServerHandle, pop: Connect
) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    session = pop()
    session.user(inbox)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        session.pass_("k_thiskeydoesnotexist000000")
    with pytest.raises(poplib.error_proto, match="USER first"):
        session.pass_(server.key)  # a failed PASS forgets the USER (RFC 1939 §7)
    session.user(inbox)
    assert session.pass_(server.key).startswith(b"+OK")


@pytest.mark.parametrize("user", ["not-an-address", "a@b", "two@at@x.test", "x" * 80 + "@x.test"])
def test_user_with_bad_syntax_is_refused(pop: Connect, user: str) -> None:
    session = pop()
    with pytest.raises(poplib.error_proto, match="-ERR invalid address"):
        session.user(user)


def test_auth_plain_with_initial_response(
    server: ServerHandle, dialog: Callable[[], Dialog]
) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    d = dialog()
    assert d.cmd(f"AUTH PLAIN {plain(inbox, server.key)}").startswith("+OK")
    assert d.cmd("STAT").startswith("+OK 1 ")


def test_auth_plain_with_continuation_and_authzid(
    server: ServerHandle, dialog: Callable[[], Dialog]
) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    d = dialog()
    assert d.cmd("AUTH PLAIN") == "+ "
    assert d.cmd(plain(inbox, server.key, authzid=inbox)).startswith("+OK")
    assert d.cmd("UIDL 1").startswith("+OK 1 ")


def test_auth_failures_and_cancel(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    d = dialog()
    assert d.cmd(f"AUTH PLAIN {plain(inbox, 'k_wrong000000000000000000000')}").startswith(
        "-ERR [AUTH]")
    assert d.cmd("AUTH PLAIN") == "+ "
    assert d.cmd("*") == "-ERR authentication cancelled"
    assert d.cmd("AUTH PLAIN not*base64").startswith("-ERR")
    assert d.cmd("AUTH PLAIN =").startswith("-ERR")  # empty response: no credentials
    assert d.cmd("AUTH CRAM-MD5").startswith("-ERR unrecognized authentication type")
    other = plain(inbox, server.key, authzid="someone@else.test")
    assert d.cmd(f"AUTH PLAIN {other}").startswith("-ERR [AUTH]")
    assert d.cmd("AUTH") == "+OK SASL mechanisms follow"
    assert d.block() == [b"PLAIN\r\n"]
    assert d.cmd(f"AUTH PLAIN {plain(inbox, server.key)}").startswith("+OK")


def test_no_transaction_commands_before_login(dialog: Callable[[], Dialog]) -> None:
    d = dialog()
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP"):
        assert d.cmd(command).startswith("-ERR"), command
    assert d.cmd("PASS whatever").startswith("-ERR send USER first")
    assert d.cmd("QUIT").startswith("+OK")
    assert d.closed()


def test_no_login_commands_after_login(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    d = dialog()
    d.cmd(f"USER {inbox}")
    assert d.cmd(f"PASS {server.key}").startswith("+OK")
    for command in (f"USER {inbox}", "PASS x", "AUTH PLAIN", "STLS", "APOP a b"):
        assert d.cmd(command).startswith("-ERR"), command
