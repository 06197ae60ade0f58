"""Issue 15 part 2: SMTP AUTH and Email Capture, over real sockets with smtplib.

``capture_server``: TLS only (the default), a capture port, accepted domains restricted to
``mailsac.test`` (so capture to other domains shows), 4 failed AUTHs per client allowed.
``dev_server``: AUTH on plaintext from loopback, accept-any, low ``ip`` and ``account``
limits. Tests that fail logins use a loopback source address of their own, because
failures are counted per client IP (and per /24: 5 x 4 = 20 in all for 127.0.0.0/24).
"""

from __future__ import annotations

import json
import smtplib
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ServerHandle,
    client,
    make_message,
    metric,
    new_account,
    start_private_server,
    stop_private_server,
    unique_inbox,
)
from tests.tlsutil import trusting

AUTH_DELAY = 0.3
FAILURES = 4
ACCOUNT_LIMIT = 5
IP_LIMIT = 3


def _start(env: dict[str, str], database_url: str) -> ServerHandle:
    return start_private_server(database_url, env, prefix="mailsac-test-auth-")


@pytest.fixture(scope="module")
def capture_server(database_url: str) -> Iterator[ServerHandle]:
    handle = _start({"MAILSAC_CAPTURE_PORT": "0", "MAILSAC_DOMAINS": "mailsac.test",
                     "MAILSAC_SMTPS_PORT": "0", "MAILSAC_SMTP_AUTH_DELAY": str(AUTH_DELAY),
                     "MAILSAC_SMTP_AUTH_FAILURES": str(FAILURES)}, database_url)
    yield handle
    stop_private_server(handle)


@pytest.fixture(scope="module")
def dev_server(database_url: str) -> Iterator[ServerHandle]:
    handle = _start({"MAILSAC_CAPTURE_PORT": "0", "MAILSAC_DOMAINS": "mailsac.test",
                     "MAILSAC_SMTP_AUTH_PLAINTEXT": "loopback",
                     "MAILSAC_SMTP_AUTH_ACCEPT_ANY": "true",
                     "MAILSAC_LIMITS": f"ip={IP_LIMIT},account={ACCOUNT_LIMIT}"}, database_url)
    yield handle
    stop_private_server(handle)


def external(domain: str = "capture-example.com") -> str:
    """An address outside MAILSAC_DOMAINS."""
    return unique_inbox(domain)


def connect(handle: ServerHandle, *, port: int | None = None, source: str = "127.0.0.1",
            tls: bool = True) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port or handle.smtp_port, timeout=30,
                        source_address=(source, 0))
    smtp.ehlo("app.example.org")
    if tls:
        code, _ = smtp.starttls(context=trusting(handle.data_dir / "tls" / "cert.pem"))
        assert code == 220
        smtp.ehlo("app.example.org")
    return smtp


def login_code(smtp: smtplib.SMTP, user: str, password: str) -> tuple[int, str]:
    """AUTH PLAIN once (``smtp.login()`` would try LOGIN too after a failure)."""
    smtp.user, smtp.password = user, password
    try:
        code, text = smtp.auth("PLAIN", smtp.auth_plain)
    except smtplib.SMTPAuthenticationError as exc:
        code, text = exc.smtp_code, exc.smtp_error
    return code, text.decode() if isinstance(text, bytes) else str(text)


def messages(handle: ServerHandle, key: str, inbox: str) -> list[dict[str, Any]]:
    with client(handle, key) as api:
        listed = api.get(f"/api/addresses/{inbox}/messages")
        assert listed.status_code == 200, listed.text
        result: list[dict[str, Any]] = listed.json()
        return result


def raw_of(handle: ServerHandle, key: str, inbox: str, message_id: str) -> bytes:
    with client(handle, key) as api:
        raw = api.get(f"/api/raw/{inbox}/{message_id}")
        assert raw.status_code == 200, raw.text
        return raw.content


def received_protocol(raw: bytes) -> str:
    first = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert first.startswith("Received: from "), first[:200]
    return first.split(" with ", 1)[1].split()[0]


def set_capture_private(handle: ServerHandle, key: str, value: bool,
                        method: str = "PUT") -> dict[str, Any]:
    with client(handle, key) as api:
        changed = api.request(method, "/api/me", json={"capturePrivate": value})
        assert changed.status_code == 200, changed.text
        assert changed.json()["capturePrivate"] is value
        me = api.get("/api/me").json()
        assert me["capturePrivate"] is value
        return dict(me)


def account_with_limit(handle: ServerHandle, message_limit: int) -> tuple[str, str]:
    account = f"cap-{uuid.uuid4().hex[:10]}"
    with client(handle, handle.key) as admin:
        created = admin.post("/api/admin/accounts",
                             json={"id": account, "messageLimit": message_limit})
        assert created.status_code == 200, created.text
        key = admin.post(f"/api/admin/accounts/{account}/keys", json={"name": "capture"})
        assert key.status_code == 200, key.text
        return account, str(key.json()["key"])


# -- AUTH: advertising, mechanisms, credentials ------------------------------------------


def test_auth_is_offered_only_after_starttls(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "tls")
    with connect(capture_server, tls=False) as smtp:
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, text = smtp.docmd("AUTH", "PLAIN")
        assert code == 538 and b"5.7.11" in text and b"STARTTLS" in text
        smtp.starttls(context=trusting(capture_server.data_dir / "tls" / "cert.pem"))
        smtp.ehlo("app.example.org")
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}  # no CRAM-MD5
        assert login_code(smtp, account, key)[0] == 235


@pytest.mark.parametrize("initial_response", [True, False])
def test_plain_and_login_with_account_name_and_owned_address(
    capture_server: ServerHandle, initial_response: bool
) -> None:
    account, key = new_account(capture_server, "mech")
    owned = f"owned-{uuid.uuid4().hex[:8]}@mailsac.test"
    with client(capture_server, key) as api:
        assert api.post(f"/api/addresses/{owned}").status_code == 200
    for user in (account, owned, owned.replace("@", "+tag@").upper()):
        for mechanism in ("PLAIN", "LOGIN"):
            with connect(capture_server) as smtp:
                smtp.user, smtp.password = user, key
                method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
                code, text = smtp.auth(mechanism, method, initial_response_ok=initial_response)
                assert code == 235, (user, mechanism, text)
                assert f"captured for account {account}".encode() in text
                assert smtp.docmd("AUTH", "PLAIN")[0] == 503  # once per session


def test_bad_foreign_and_revoked_keys_are_refused(capture_server: ServerHandle) -> None:
    source = "127.0.0.3"
    account, key = new_account(capture_server, "bad")
    other_account, other_key = new_account(capture_server, "other")
    with client(capture_server, capture_server.key) as admin:
        extra = admin.post(f"/api/admin/accounts/{account}/keys", json={"name": "old"})
        assert extra.status_code == 200
        revoked_key, revoked_id = extra.json()["key"], extra.json()["id"]
        with connect(capture_server, source=source) as smtp:
            assert login_code(smtp, account, revoked_key)[0] == 235  # valid before revoking
        assert admin.delete(f"/api/admin/keys/{revoked_id}").status_code == 204
    for user, password in ((account, "k_wrongwrongwrongwrongwrong0"),
                           (account, other_key),  # a real key, of another account
                           (account, revoked_key)):
        with connect(capture_server, source=source) as smtp:
            started = time.monotonic()
            code, text = login_code(smtp, user, password)
            assert code == 535 and "5.7.8" in text, text
            assert time.monotonic() - started >= AUTH_DELAY  # failures are slowed down
            assert password not in capture_server.log()
    with connect(capture_server, source="127.0.0.4") as smtp:
        assert login_code(smtp, other_account, other_key)[0] == 235


def _auth_outcomes(server: ServerHandle) -> dict[str, float]:
    """``mailsac_smtp_auth_total`` by outcome, from ``GET /metrics``."""
    return {outcome: metric(server, "mailsac_smtp_auth_total", f'{{outcome="{outcome}"}}')
            for outcome in ("invalid", "throttled", "accepted")}


def test_failed_logins_are_limited_per_client(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "limit")
    guesser = "127.0.0.5"
    before = _auth_outcomes(capture_server)
    for _ in range(FAILURES):
        with connect(capture_server, source=guesser) as smtp:
            assert login_code(smtp, account, "k_guessguessguessguessguess0")[0] == 535
    with connect(capture_server, source=guesser) as smtp:
        code, text = login_code(smtp, account, key)  # even the right key: over the limit
        assert code == 454 and "4.7.0" in text and "try again in" in text, text
        inbox = unique_inbox("mailsac.test")  # anonymous mail still works from there
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    with connect(capture_server, source="127.0.0.6") as smtp:  # another client: unaffected
        assert login_code(smtp, account, key)[0] == 235
    after = _auth_outcomes(capture_server)  # counted by outcome, for /metrics
    assert after["invalid"] - before["invalid"] == FAILURES
    assert after["throttled"] - before["throttled"] == 1
    assert after["accepted"] - before["accepted"] == 1


def test_auth_is_refused_to_a_deny_listed_client(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "deny")
    source = "127.0.0.9"
    with connect(capture_server, source=source) as smtp, \
            client(capture_server, capture_server.key) as admin:
        added = admin.post("/api/admin/deny-list", json={"value": source, "reason": "auth test"})
        assert added.status_code == 200
        try:
            code, text = login_code(smtp, account, key)
            assert code == 554 and "auth test" in text, text
        finally:
            assert admin.delete(f"/api/admin/deny-list/{source}").status_code == 204


# -- Email Capture -----------------------------------------------------------------------


def test_capture_to_external_domains_for_to_cc_and_bcc(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "cap")
    to, cc, bcc = external(), external("cc.capture-example.net"), external("bcc.example.io")
    msg = EmailMessage()
    msg["From"] = "App <app@my-app.example>"
    msg["To"], msg["Cc"], msg["Bcc"] = to, cc, bcc
    msg["Subject"] = "captured"
    msg.set_content("hello from the app")
    with connect(capture_server, tls=False) as anonymous:  # not without AUTH
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            anonymous.send_message(msg)
        assert refused.value.recipients[to][0] == 550
    with connect(capture_server, port=capture_server.capture_port) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.send_message(msg) == {}  # smtplib sends Bcc in the envelope only
    for inbox in (to, cc, bcc):
        [found] = messages(capture_server, key, inbox)
        assert found["subject"] == "captured" and found["rtls"] is True
        assert found["savedBy"] is None  # capturePrivate is off: public
        assert [a["address"] for a in found["to"]] == [to]
        assert [a["address"] for a in found["cc"]] == [cc]
        assert found["bcc"] == []  # the stored headers do not reveal the Bcc recipient
        raw = raw_of(capture_server, key, inbox, found["_id"])
        assert received_protocol(raw) == "ESMTPSA"
        assert bcc.encode() not in raw.split(b"\r\n\r\n", 1)[1]
    other_key = new_account(capture_server, "reader")[1]
    assert len(messages(capture_server, other_key, to)) == 1  # public: any key reads it


def test_capture_private_stars_for_the_account(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "priv")
    other_key = new_account(capture_server, "nosy")[1]
    me = set_capture_private(capture_server, key, True)
    assert me["_id"] == account
    to = external()
    with connect(capture_server) as smtp:  # the main port with AUTH is capture too
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [to], make_message(to, "private")) == {}
    [found] = messages(capture_server, key, to)
    assert found["savedBy"] == account
    assert messages(capture_server, other_key, to) == []  # hidden from everyone else
    with client(capture_server, other_key) as nosy:
        assert nosy.get(f"/api/addresses/{to}/messages/{found['_id']}").status_code == 404
        assert nosy.get(f"/api/raw/{to}/{found['_id']}").status_code == 404
    with client(capture_server, key) as api:
        starred = api.get("/api/addresses/starred/messages").json()
        assert [m["_id"] for m in starred] == [found["_id"]]
    set_capture_private(capture_server, key, False, method="PATCH")
    later = external()
    with connect(capture_server) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [later], make_message(later)) == {}
    assert messages(capture_server, other_key, later)[0]["savedBy"] is None


def test_capture_never_stars_into_another_tenants_inbox(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "capt")
    owner, owner_key = new_account(capture_server, "owner")
    reserved = f"private-{uuid.uuid4().hex[:8]}@capture-example.com"
    with client(capture_server, owner_key) as api:
        assert api.post(f"/api/addresses/{reserved}").status_code == 200
    set_capture_private(capture_server, key, True)
    public = external()
    with connect(capture_server) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [reserved, public],
                             make_message(reserved, "two tenants")) == {}
    [in_reserved] = messages(capture_server, owner_key, reserved)
    assert in_reserved["savedBy"] is None  # the owner's private mail, as anyone's would be
    with client(capture_server, key) as capturer:
        assert capturer.get(f"/api/addresses/{reserved}/messages").status_code == 403
        denied = capturer.get(f"/api/addresses/{reserved}/messages/{in_reserved['_id']}")
        assert denied.status_code == 401
        starred = [m["inbox"] for m in capturer.get("/api/addresses/starred/messages").json()]
        assert starred == [public]  # the public copy is starred, the owner's is not
    with client(capture_server, owner_key) as api:  # the owner can purge its inbox
        assert api.delete(f"/api/addresses/{reserved}/messages").status_code == 204
    assert messages(capture_server, owner_key, reserved) == []


def test_capture_private_refuses_recipients_beyond_the_starred_quota(
    capture_server: ServerHandle
) -> None:
    account, key = account_with_limit(capture_server, 2)
    set_capture_private(capture_server, key, True)
    first, second, third = external(), external(), external()
    with connect(capture_server) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [first], make_message(first)) == {}
        refused = smtp.sendmail("app@my-app.example", [second, third], make_message(second))
        assert list(refused) == [third] and refused[third][0] == 452
        assert b"4.2.2" in refused[third][1] and b"unstar" in refused[third][1]
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("app@my-app.example", [third], make_message(third))
    for inbox in (first, second):  # every acknowledged copy is stored and starred
        assert messages(capture_server, key, inbox)[0]["savedBy"] == account
    assert messages(capture_server, key, third) == []
    with client(capture_server, key) as api:
        [starred] = [m for m in api.get("/api/addresses/starred/messages").json()
                     if m["inbox"] == first]
        assert api.put(f"/api/addresses/{first}/messages/{starred['_id']}/star").json()[
            "savedBy"] is None  # unstarring makes room again
    with connect(capture_server) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [third], make_message(third)) == {}


def test_capture_over_smtps(capture_server: ServerHandle) -> None:
    account, key = new_account(capture_server, "smtps")
    to = external()
    with smtplib.SMTP_SSL("localhost", capture_server.smtps_port, timeout=30,
                          context=trusting(capture_server.data_dir / "tls" / "cert.pem")) as smtp:
        smtp.ehlo("app.example.org")
        assert smtp.has_extn("auth")  # implicit TLS: offered at once
        smtp.login(account, key)  # what applications call (PLAIN, then LOGIN on failure)
        assert smtp.sendmail("app@my-app.example", [to], make_message(to)) == {}
    [found] = messages(capture_server, key, to)
    assert found["rtls"] is True
    assert received_protocol(raw_of(capture_server, key, to, found["_id"])) == "ESMTPSA"


def test_capture_port_requires_auth_before_mail(
    capture_server: ServerHandle, server: ServerHandle
) -> None:
    assert capture_server.capture_port > 0
    ready = json.loads((capture_server.data_dir / "ready.json").read_text())
    assert ready["capture_port"] == capture_server.capture_port
    assert server.capture_port == -1  # off unless configured
    account, key = new_account(capture_server, "port")
    inbox = unique_inbox("mailsac.test")  # even for an accepted domain
    with connect(capture_server, port=capture_server.capture_port, tls=False) as smtp:
        assert not smtp.has_extn("auth")
        code, text = smtp.mail("a@example.org")
        assert code == 530 and b"5.7.0" in text and b"AUTH" in text
    with connect(capture_server, port=capture_server.capture_port) as smtp:
        code, text = smtp.mail("a@example.org")
        assert code == 530
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    assert len(messages(capture_server, key, inbox)) == 1


# -- development settings: plaintext from loopback, accept-any, account limits ------------


def test_plaintext_auth_from_loopback_when_allowed(dev_server: ServerHandle) -> None:
    account, key = new_account(dev_server, "dev")
    to = external()
    with connect(dev_server, tls=False) as smtp:
        assert set(smtp.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert login_code(smtp, account, key)[0] == 235
        assert smtp.sendmail("app@my-app.example", [to], make_message(to)) == {}
    [found] = messages(dev_server, key, to)
    assert found["rtls"] is False
    assert received_protocol(raw_of(dev_server, key, to, found["_id"])) == "ESMTPA"


def test_accept_any_lets_clients_send_anonymously(dev_server: ServerHandle) -> None:
    inbox, outside = unique_inbox("mailsac.test"), external()
    with connect(dev_server, tls=False, source="127.0.0.30") as smtp:
        code, text = login_code(smtp, "whoever", "whatever")
        assert code == 235 and "anonymous" in text, text
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # not a capture session
            smtp.sendmail("app@my-app.example", [outside], make_message(outside))
        assert smtp.sendmail("app@my-app.example", [inbox], make_message(inbox)) == {}
    [found] = messages(dev_server, dev_server.key, inbox)
    assert received_protocol(raw_of(dev_server, dev_server.key, inbox, found["_id"])) == "ESMTP"
    account, key = new_account(dev_server, "real")
    with connect(dev_server, port=dev_server.capture_port, tls=False,
                 source="127.0.0.31") as smtp:
        assert login_code(smtp, account, "k_notakeynotakeynotakeynotak")[0] == 535
        assert login_code(smtp, account, key)[0] == 235  # the capture port checks


def test_authenticated_sessions_count_against_the_account(dev_server: ServerHandle) -> None:
    account, key = new_account(dev_server, "quota")
    source = "127.0.0.40"
    with connect(dev_server, tls=False, source=source) as smtp:
        assert login_code(smtp, account, key)[0] == 235
        for _ in range(ACCOUNT_LIMIT):  # beyond the anonymous per-IP limit
            to = external()
            assert smtp.sendmail("app@my-app.example", [to], make_message(to)) == {}
        to = external()
        with pytest.raises(smtplib.SMTPDataError) as limited:
            smtp.sendmail("app@my-app.example", [to], make_message(to))
        assert limited.value.smtp_code == 421
        assert f"account {account}".encode() in limited.value.smtp_error
    other, other_key = new_account(dev_server, "quota2")
    with connect(dev_server, tls=False, source=source) as smtp:  # same IP, other account
        assert login_code(smtp, other, other_key)[0] == 235
        to = external()
        assert smtp.sendmail("app@my-app.example", [to], make_message(to)) == {}
    with connect(dev_server, tls=False, source=source) as smtp:  # same IP, anonymous
        for _ in range(IP_LIMIT):
            inbox = unique_inbox("mailsac.test")
            assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
        inbox = unique_inbox("mailsac.test")
        with pytest.raises(smtplib.SMTPDataError) as anonymous:
            smtp.sendmail("a@example.org", [inbox], make_message(inbox))
        assert anonymous.value.smtp_code == 421 and source.encode() in \
            anonymous.value.smtp_error


def test_me_update_validates_its_body(capture_server: ServerHandle) -> None:
    key = new_account(capture_server, "body")[1]
    with client(capture_server, key) as api:
        for body in ({}, {"capturePrivate": "yes"}, {"capturePrivate": 1}):
            bad = api.put("/api/me", json=body)
            assert bad.status_code == 400 and "capturePrivate" in bad.json()["message"]
    with httpx.Client(base_url=capture_server.http_url, timeout=30) as anon:
        assert anon.put("/api/me", json={"capturePrivate": True}).status_code == 401
