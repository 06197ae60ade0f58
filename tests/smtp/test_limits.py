"""Throttling, deny-lists, admission and large messages against a real server with small
limits. Loopback has many addresses: attackers and legitimate clients bind different
127.x.y.z source addresses, so per-IP and per-/24 limits can be exercised for real."""

from __future__ import annotations

import shutil
import smtplib
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsac.smtp import replies
from tests.helpers import (
    ServerHandle,
    client,
    make_message,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-limits-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": database_url,
        "MAILSAC_LIMITS": "sender_org=5,rcpt_public=3,rcpt_private=50",
        "MAILSAC_MAX_CONNECTIONS_PER_IP": "5",
        "MAILSAC_MAX_CONNECTIONS_PER_NETWORK": "8",
        "MAILSAC_ADMISSION_TIMEOUT": "1",
        "MAILSAC_MAX_MESSAGE_SIZE": "30000000",
    })
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


def _connect(server: ServerHandle, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=15,
                                    source_address=(source, 0))
    return sock


def _banner(sock: socket.socket) -> bytes:
    return sock.makefile("rb").readline()


def _send(server: ServerHandle, sender: str, to: str, source: str = "127.0.0.1",
          subject: str = "limited") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, source_address=(source, 0)) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(sender)
        if code != 250:
            return code, text
        code, text = smtp.rcpt(to)
        if code != 250:
            return code, text
        return smtp.data(make_message(to, subject=subject))


def test_unique_subdomain_per_message_still_trips_the_org_domain_limit(
    limited: ServerHandle,
) -> None:
    codes = []
    for _ in range(6):
        sub = ".".join(uuid.uuid4().hex[:6] for _ in range(6))  # 6 levels, new every time
        codes.append(_send(limited, f"news@{sub}.sandbox.example.com", unique_inbox()))
    assert [c for c, _ in codes[:5]] == [250] * 5
    code, text = codes[5]
    assert code == 421 and text.startswith(b"4.7.0")
    assert b"example.com" in text and b"try again" in text.lower()
    assert _send(limited, "ok@other-org.test", unique_inbox())[0] == 250
    with client(limited, limited.key) as admin:
        top = admin.get("/api/admin/top-offenders").json()
    assert top["sender_org"][0] == {"key": "example.com", "count": 5}


def test_public_flood_does_not_starve_private_inbox(limited: ServerHandle) -> None:
    public = unique_inbox()
    codes = [_send(limited, f"a@{uuid.uuid4().hex[:8]}.test", public)[0] for _ in range(4)]
    assert codes == [250, 250, 250, 421]
    _, key = new_account(limited)
    private = unique_inbox()
    with client(limited, key) as api:
        assert api.post(f"/api/addresses/{private}").status_code == 200
    codes = [_send(limited, f"a@{uuid.uuid4().hex[:8]}.test", private)[0] for _ in range(6)]
    assert codes == [250] * 6


def test_deny_list_takes_effect_on_the_next_command(limited: ServerHandle) -> None:
    domain = f"spammer-{uuid.uuid4().hex[:6]}.test"
    with smtplib.SMTP("127.0.0.1", limited.smtp_port) as smtp:
        smtp.ehlo()
        assert smtp.mail(f"a@{domain}")[0] == 250
        smtp.rset()
        with client(limited, limited.key) as admin:
            added = admin.post("/api/admin/deny-list",
                               json={"value": domain, "reason": "phishing campaign"})
            assert added.status_code == 200 and added.json()["kind"] == "domain"
            assert domain in admin.get("/api/mailstats/blacklist").json()
            assert admin.get(f"/api/mailstats/blacklist/x.{domain}").json() == {
                "blacklisted": True}
        code, text = smtp.mail(f"a@mx.{domain}")  # same session, sub-domain too
        assert code == 554 and text.startswith(b"5.7.1") and b"phishing campaign" in text
    with client(limited, limited.key) as admin:
        assert admin.delete(f"/api/admin/deny-list/{domain}").status_code == 204
        assert admin.get(f"/api/mailstats/blacklist/{domain}").json() == {"blacklisted": False}
        assert admin.post("/api/admin/deny-list", json={"value": "not valid!"}).status_code \
            == 400
        assert admin.post("/api/admin/deny-list",
                          json={"value": "127.0.3.0/24", "reason": "bad net"}).status_code == 200
    sock = _connect(limited, "127.0.3.9")
    try:
        banner = _banner(sock)
    finally:
        sock.close()
    assert banner.startswith(b"554 5.7.1") and b"bad net" in banner
    with client(limited, limited.key) as admin:
        admin.delete("/api/admin/deny-list/127.0.3.0/24")
    assert _send(limited, "a@fine.test", unique_inbox(), source="127.0.3.9")[0] == 250


def test_idle_sockets_cannot_lock_out_a_legitimate_client(limited: ServerHandle) -> None:
    attackers = [_connect(limited, "127.0.2.7") for _ in range(12)]
    try:
        banners = [_banner(s) for s in attackers]  # the waiting ones time out after 1 s
        admitted = [b for b in banners if b.startswith(b"220")]
        refused = [b for b in banners if b.startswith(b"421")]
        assert len(admitted) == 5 and len(refused) == 7
        assert refused[0].startswith(f"{replies.S421_BUSY.code} {replies.S421_BUSY.enhanced}"
                                     .encode())
        # A client elsewhere is served at once while the attacker's sockets stay open.
        assert _send(limited, "real@customer.test", unique_inbox(), source="127.0.4.1")[0] == 250
    finally:
        for sock in attackers:
            sock.close()


def test_metrics_are_exposed_with_bounded_labels(limited: ServerHandle) -> None:
    with client(limited, None) as anon:
        text = anon.get("/metrics").text
    for name in ("mailsac_messages_accepted_total", "mailsac_throttle_decisions_total",
                 "mailsac_event_loop_lag_seconds", "mailsac_smtp_sessions",
                 "mailsac_db_commits_total", "mailsac_writer_queue_depth",
                 "mailsac_smtp_data_memory_bytes", "mailsac_smtp_data_memory_refused_total",
                 "mailsac_http_connections_refused_total", "mailsac_render_cache_bytes"):
        assert name in text
    assert "mailsac_database_available 1.0" in text
    assert float(text.split("\nmailsac_http_connections ")[1].split()[0]) >= 1  # this one
    assert 'decision="denied",limit="sender_org"' in text
    assert "127.0." not in text and "example.com" not in text  # no IPs or domains as labels


def test_a_20_mb_message_does_not_stall_the_api(limited: ServerHandle) -> None:
    to = unique_inbox()
    body = ("x" * 76 + "\r\n") * (20_000_000 // 78)
    raw = make_message(to, subject="huge", body=body)
    assert len(raw) > 20_000_000
    done = threading.Event()
    result: dict[str, object] = {}

    def upload() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", limited.smtp_port, timeout=120) as smtp:
                result["refused"] = smtp.sendmail("big@sender.test", [to], raw)
        finally:
            done.set()

    thread = threading.Thread(target=upload)
    answered = 0
    with client(limited, limited.key) as api:
        thread.start()
        while not done.is_set():
            started = time.monotonic()
            assert api.get("/healthz").status_code == 200
            answered += 1
            assert time.monotonic() - started < 15  # never stuck behind the upload (seconds)
        thread.join()
        assert result["refused"] == {}
        (message,) = api.get(f"/api/addresses/{to}/messages").json()
        stored = api.get(f"/api/raw/{to}/{message['_id']}").content
    assert stored.endswith(raw)
    assert answered >= 3  # the API kept answering while the message streamed in
