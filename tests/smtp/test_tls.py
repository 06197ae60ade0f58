"""Issue 15 part 1: STARTTLS, SMTPS, rtls, the generated certificate and its reloads.

Two dedicated servers with the generated self-signed certificate (no MAILSAC_TLS_*):
``tls_server`` with an SMTPS port, a short handshake timeout and reloads only on SIGHUP;
``strict_tls`` with ``MAILSAC_SMTP_REQUIRE_TLS`` and fast file-change polling.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTPUTF8
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsac.smtp import replies
from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    log_failures,
    make_message,
    start_private_server,
    stop_private_server,
    unique_inbox,
)
from tests.tlsutil import make_certificate, pem_fingerprint, smtp_fingerprint, trusting

HANDSHAKE_TIMEOUT = 3.0  # short enough to wait out, long for a real handshake on a busy CI


def _start(env: dict[str, str], database_url: str) -> ServerHandle:
    return start_private_server(database_url, env, prefix="mailsac-test-tls-")


@pytest.fixture(scope="module")
def tls_server(database_url: str) -> Iterator[ServerHandle]:
    handle = _start({"MAILSAC_SMTPS_PORT": "0", "MAILSAC_TLS_RELOAD_INTERVAL": "0",
                     "MAILSAC_TLS_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)}, database_url)
    yield handle
    stop_private_server(handle)


@pytest.fixture(scope="module")
def strict_tls(database_url: str) -> Iterator[ServerHandle]:
    # Files are acted on once unchanged for one interval: 1 s leaves a busy test thread
    # plenty of room between replacing the certificate and the key.
    handle = _start({"MAILSAC_SMTP_REQUIRE_TLS": "true",
                     "MAILSAC_TLS_RELOAD_INTERVAL": "1"}, database_url)
    yield handle
    stop_private_server(handle)


def cert_of(handle: ServerHandle) -> Path:
    return handle.data_dir / "tls" / "cert.pem"


def only_message(handle: ServerHandle, inbox: str) -> tuple[dict[str, Any], bytes]:
    with client(handle, handle.key) as api:
        listed = api.get(f"/api/addresses/{inbox}/messages")
        assert listed.status_code == 200, listed.text
        [message] = listed.json()
        raw = api.get(f"/api/raw/{inbox}/{message['_id']}")
        assert raw.status_code == 200
        return message, raw.content


def received_protocol(raw: bytes) -> str:
    first = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert first.startswith("Received: from "), first[:200]
    return first.split(" with ", 1)[1].split()[0]


def test_generated_certificate_is_kept_private_and_logged(tls_server: ServerHandle) -> None:
    cert, key = cert_of(tls_server), tls_server.data_dir / "tls" / "key.pem"
    assert cert.exists() and key.exists()
    assert key.stat().st_mode & 0o777 == 0o600
    assert pem_fingerprint(cert) in tls_server.log()  # the fingerprint operators compare
    assert smtp_fingerprint(tls_server.smtp_port) == pem_fingerprint(cert)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_starttls_delivers_with_rtls(tls_server: ServerHandle, host: str) -> None:
    inbox = unique_inbox()
    with smtplib.SMTP(host, tls_server.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=trusting(cert_of(tls_server)))  # checks the name
        assert code == 220
        smtp.ehlo("client.example.org")  # RFC 3207: the session starts over
        assert not smtp.has_extn("starttls")
        assert smtp.has_extn("smtputf8") and smtp.has_extn("pipelining")
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    message, raw = only_message(tls_server, inbox)
    assert message["rtls"] is True
    assert received_protocol(raw) == "ESMTPS"


def test_plain_delivery_has_no_rtls(tls_server: ServerHandle) -> None:
    inbox = unique_inbox()
    deliver(tls_server, inbox)
    message, raw = only_message(tls_server, inbox)
    assert message["rtls"] is False
    assert received_protocol(raw) == "ESMTP"


def test_smtps_delivers_with_rtls(tls_server: ServerHandle) -> None:
    assert tls_server.smtps_port > 0
    inbox = unique_inbox()
    context = trusting(cert_of(tls_server))
    with smtplib.SMTP_SSL("localhost", tls_server.smtps_port, timeout=30,
                          context=context) as smtp:
        smtp.ehlo("client.example.org")
        assert not smtp.has_extn("starttls")  # already under TLS
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    message, raw = only_message(tls_server, inbox)
    assert message["rtls"] is True
    assert received_protocol(raw) == "ESMTPS"


def test_state_before_starttls_is_forgotten(tls_server: ServerHandle) -> None:
    with smtplib.SMTP("127.0.0.1", tls_server.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.mail("a@example.org")[0] == 250
        smtp.starttls(context=trusting(cert_of(tls_server)))
        # no EHLO yet: the plaintext EHLO and MAIL do not count any more
        assert smtp.docmd("RCPT", f"TO:<{unique_inbox()}>")[0] == 503
        smtp.ehlo("client.example.org")
        assert smtp.docmd("RCPT", f"TO:<{unique_inbox()}>")[0] == 503  # no MAIL yet
        assert smtp.docmd("STARTTLS")[0] == replies.S503_TLS_ACTIVE.code


def _read_reply(f: Any) -> bytes:
    lines = b""
    while True:
        line = f.readline()
        assert line, "connection closed"
        lines += line
        if line[3:4] != b"-":
            return lines


def test_commands_pipelined_behind_starttls_are_discarded(tls_server: ServerHandle) -> None:
    """CVE-2011-0411: what arrives with STARTTLS must not run inside TLS."""
    inbox = unique_inbox()
    injected = f"MAIL FROM:<injected@evil.test>\r\nRCPT TO:<{inbox}>\r\n".encode()
    with socket.create_connection(("127.0.0.1", tls_server.smtp_port), timeout=30) as sock:
        f = sock.makefile("rb")
        assert _read_reply(f).startswith(b"220 ")
        sock.sendall(b"EHLO client.example.org\r\n")
        assert b"STARTTLS" in _read_reply(f)
        sock.sendall(b"STARTTLS\r\n" + injected)  # one write, one packet
        assert _read_reply(f).startswith(b"220 2.0.0")
        with trusting(cert_of(tls_server)).wrap_socket(
                sock, server_hostname="localhost") as tls:
            g = tls.makefile("rb")
            tls.sendall(b"EHLO client.example.org\r\n")
            assert _read_reply(g).startswith(b"250-")  # EHLO's reply, nothing before it
            tls.sendall(f"RCPT TO:<{inbox}>\r\n".encode())
            assert _read_reply(g).startswith(b"503")  # the injected MAIL did not run
            tls.sendall(b"NOOP\r\n")
            assert _read_reply(g).startswith(b"250")
            tls.sendall(b"QUIT\r\n")
            assert _read_reply(g).startswith(b"221")
    assert "pipelined" in tls_server.log() and "after STARTTLS: discarded" in tls_server.log()
    with client(tls_server, tls_server.key) as api:
        assert api.get(f"/api/addresses/{inbox}/messages").json() == []


def test_stalled_or_failed_handshakes_end_the_session(tls_server: ServerHandle) -> None:
    # Idle timeout is 300 s: a close within the socket timeout is the handshake timeout.
    with socket.create_connection(("127.0.0.1", tls_server.smtp_port), timeout=60) as sock:
        f = sock.makefile("rb")
        _read_reply(f)
        sock.sendall(b"EHLO client.example.org\r\nSTARTTLS\r\n")
        _read_reply(f)
        assert _read_reply(f).startswith(b"220 ")
        assert sock.recv(1024) == b""  # never sent a ClientHello: closed
    with socket.create_connection(("127.0.0.1", tls_server.smtps_port), timeout=60) as sock:
        assert sock.recv(1024) == b""  # SMTPS: no banner before TLS, closed at the timeout
    with socket.create_connection(("127.0.0.1", tls_server.smtps_port), timeout=60) as sock:
        sock.sendall(b"EHLO plaintext.example.org\r\n")  # not a TLS record
        assert sock.recv(1024) == b""
    # a client that does not trust the certificate: the handshake fails, quietly
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL("localhost", tls_server.smtps_port, timeout=30,
                         context=ssl.create_default_context())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with client(tls_server, None) as anon:
            active = _sessions_active(anon)
        if active == 0:
            break
        time.sleep(0.1)
    assert active == 0, "a failed handshake kept its slot"
    log = tls_server.log()
    assert "TLS handshake with" in log and not log_failures(log, levels=())


def _sessions_active(anon: httpx.Client) -> float:
    text = anon.get("/metrics").text
    line = next(line for line in text.splitlines()
                if line.startswith("mailsac_smtp_sessions{") and 'state="active"' in line)
    return float(line.split()[-1])


def test_utf8_address_and_subject_under_tls(tls_server: ServerHandle) -> None:
    local = f"jösé.{unique_inbox().split('@')[0]}"
    inbox = f"{local}@example.test"
    msg = EmailMessage(policy=SMTPUTF8)
    msg["From"] = "Zoë <zoë@example.org>"
    msg["To"] = inbox
    msg["Subject"] = "Grüße aus Köln ✉ 日本語"
    msg.set_content("Hallo, schöne Grüße\n")
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", tls_server.smtp_port, timeout=30) as smtp:
        smtp.starttls(context=trusting(cert_of(tls_server)))
        smtp.ehlo("client.example.org")
        refused = smtp.sendmail("zoë@example.org", [inbox], raw,
                                mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        assert refused == {}
    message, stored = only_message(tls_server, inbox)
    assert message["rtls"] is True
    assert message["subject"] == "Grüße aus Köln ✉ 日本語"
    assert message["inbox"] == inbox
    assert message["from"] == [{"name": "Zoë", "address": "zoë@example.org"}]
    assert "Grüße aus Köln ✉ 日本語".encode() in stored


def test_openssl_s_client_starttls(tls_server: ServerHandle) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    done = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect",
         f"127.0.0.1:{tls_server.smtp_port}", "-CAfile", str(cert_of(tls_server)),
         "-verify_hostname", "localhost", "-verify_return_error", "-crlf", "-quiet"],
        input=b"EHLO openssl.example.org\nQUIT\n", capture_output=True, timeout=60)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "250-" in out and "STARTTLS" not in out and "221" in out


def test_sighup_reloads_the_certificate(tls_server: ServerHandle, tmp_path: Path) -> None:
    old = smtp_fingerprint(tls_server.smtp_port)
    # an established TLS session is not disturbed by reloads
    kept = smtplib.SMTP("127.0.0.1", tls_server.smtp_port, timeout=30)
    kept.starttls(context=trusting(cert_of(tls_server)))
    kept.ehlo("client.example.org")
    cert, key = cert_of(tls_server), tls_server.data_dir / "tls" / "key.pem"
    saved = cert.read_bytes()
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")  # a broken edit
    tls_server.proc.send_signal(signal.SIGHUP)
    _wait_for_log(tls_server, "reload (SIGHUP) failed")
    assert smtp_fingerprint(tls_server.smtp_port) == old  # the previous one stays
    cert.write_bytes(saved)

    new_cert, new_key = make_certificate(tmp_path)
    shutil.copyfile(new_key, key)
    shutil.copyfile(new_cert, cert)
    tls_server.proc.send_signal(signal.SIGHUP)
    expected = pem_fingerprint(new_cert)
    assert _wait_for_fingerprint(tls_server.smtp_port, expected=expected) == expected
    assert smtp_fingerprint(tls_server.smtps_port, implicit=True) == expected
    inbox = unique_inbox()
    assert kept.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    kept.quit()
    # a client that trusts only the new certificate verifies it
    with smtplib.SMTP("127.0.0.1", tls_server.smtp_port, timeout=30) as smtp:
        assert smtp.starttls(context=trusting(new_cert))[0] == 220


def _wait_for_log(handle: ServerHandle, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in handle.log():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def _wait_for_fingerprint(port: int, old: str | None = None, expected: str | None = None
                          ) -> str:
    deadline = time.monotonic() + 30
    while True:
        seen = smtp_fingerprint(port)
        if (expected is None or seen == expected) and seen != old:
            return seen
        assert time.monotonic() < deadline, "the certificate was not reloaded"
        time.sleep(0.1)


def test_require_tls_refuses_mail_before_starttls(strict_tls: ServerHandle) -> None:
    inbox = unique_inbox()
    with smtplib.SMTP("127.0.0.1", strict_tls.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        assert smtp.noop()[0] == 250
        code, text = smtp.mail("a@example.org")
        assert (code, text.decode()) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert smtp.docmd("RCPT", f"TO:<{inbox}>")[0] == 530
        smtp.starttls(context=trusting(cert_of(strict_tls)))
        smtp.ehlo("client.example.org")
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    message, _ = only_message(strict_tls, inbox)
    assert message["rtls"] is True


def test_changed_files_are_reloaded(strict_tls: ServerHandle, tmp_path: Path) -> None:
    cert, key = cert_of(strict_tls), strict_tls.data_dir / "tls" / "key.pem"
    old = smtp_fingerprint(strict_tls.smtp_port)
    assert old == pem_fingerprint(cert)
    new_cert, new_key = make_certificate(tmp_path)
    # replaced one after the other, as a careless deploy would: loaded once both are there
    os.replace(new_cert, cert)
    time.sleep(0.05)
    os.replace(new_key, key)
    seen = _wait_for_fingerprint(strict_tls.smtp_port, old=old)
    assert seen == pem_fingerprint(cert)
    assert "reloaded (the files changed)" in strict_tls.log()
    assert "failed" not in strict_tls.log()


def test_ready_file_reports_smtps_port(tls_server: ServerHandle, strict_tls: ServerHandle
                                       ) -> None:
    ready = json.loads((tls_server.data_dir / "ready.json").read_text())
    assert ready["smtps_port"] == tls_server.smtps_port > 0
    assert json.loads((strict_tls.data_dir / "ready.json").read_text())["smtps_port"] == -1
