"""``python -m mailsac serve`` exactly as a newcomer runs it: no DATABASE_URL, embedded PG."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    ADMIN_KEY,
    ROOT,
    ServerHandle,
    deliver,
    start_server,
    stop_server,
    unique_inbox,
)


def _postgres_alive(data_dir: Path) -> bool:
    pid_file = data_dir / "postgres" / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _wait_until(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailsac-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _client(handle: ServerHandle) -> httpx.Client:
    return httpx.Client(base_url=handle.http_url, headers={"Mailsac-Key": ADMIN_KEY}, timeout=30)


def test_embedded_database_round_trip_and_restart(data_dir: Path) -> None:
    handle = start_server(data_dir, {})
    inbox = unique_inbox()
    try:
        assert _postgres_alive(data_dir)
        deliver(handle, inbox, subject="survives restart")
        with _client(handle) as api:
            assert api.get(f"/api/addresses/{inbox}/message-count").json()["count"] == 1
    finally:
        code = stop_server(handle)
    assert code == 0, handle.log()
    assert "mailsac stopped" in handle.log()
    assert not _postgres_alive(data_dir), "embedded PostgreSQL outlived a clean shutdown"

    handle = start_server(data_dir, {})  # same data dir: same database, same blobs
    try:
        with _client(handle) as api:
            (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
            assert message["subject"] == "survives restart"
            raw = api.get(f"/api/raw/{inbox}/{message['_id']}")
            assert b"Subject: survives restart" in raw.content
    finally:
        assert stop_server(handle) == 0


def test_first_start_prints_a_working_key(data_dir: Path, database_url: str) -> None:
    import re

    fresh_db = database_url.replace("/mailsac_test?", "/mailsac_first_key?")
    handle = start_server(data_dir, {"DATABASE_URL": fresh_db, "MAILSAC_ADMIN_KEY": ""})
    try:
        match = re.search(r"shown only once\): (k_[a-z0-9]{26})", handle.log())
        assert match, handle.log()
        response = httpx.get(f"{handle.http_url}/api/addresses/{unique_inbox()}/messages",
                             headers={"Mailsac-Key": match.group(1)}, timeout=30)
        assert response.status_code == 200
    finally:
        assert stop_server(handle) == 0
    handle = start_server(data_dir, {"DATABASE_URL": fresh_db, "MAILSAC_ADMIN_KEY": ""})
    try:
        assert handle.log().count("shown only once") == 1  # not again on the second start
    finally:
        assert stop_server(handle) == 0


def test_sigkill_takes_embedded_postgres_down_too(data_dir: Path) -> None:
    handle = start_server(data_dir, {})
    assert _postgres_alive(data_dir)
    handle.proc.send_signal(signal.SIGKILL)
    handle.proc.wait(10)
    assert _wait_until(lambda: not _postgres_alive(data_dir), 60), "orphaned PostgreSQL"


def test_cli_attaches_to_the_running_service_database(data_dir: Path) -> None:
    handle = start_server(data_dir, {})
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MAILSAC_") and k != "DATABASE_URL"}
        env["MAILSAC_DATA_DIR"] = str(data_dir)
        created = subprocess.run(
            [sys.executable, "-m", "mailsac", "keys", "create", "--name", "laptop"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        inbox = unique_inbox()
        deliver(handle, inbox)
        response = httpx.get(f"{handle.http_url}/api/addresses/{inbox}/messages",
                             headers={"Mailsac-Key": key}, timeout=30)
        assert response.status_code == 200 and len(response.json()) == 1
        # A second service on the same data dir is refused with a clear message.
        second = subprocess.run(
            [sys.executable, "-m", "mailsac", "serve", "--smtp-port", "0", "--http-port", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode != 0
        assert "in use by another running mailsac" in second.stderr
    finally:
        assert stop_server(handle) == 0


def test_migrate_command_and_help(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MAILSAC_") and k != "DATABASE_URL"}
    env["MAILSAC_DATA_DIR"] = str(data_dir)
    migrated = subprocess.run([sys.executable, "-m", "mailsac", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout
    assert not _postgres_alive(data_dir)  # the command stops the server it started
    helped = subprocess.run([sys.executable, "-m", "mailsac", "serve", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    for flag, default in (("--smtp-port", "2525"), ("--http-port", "8080"),
                          ("--data-dir", "mailsac-data"), ("--domains", "")):
        assert flag in helped.stdout
        assert default in helped.stdout
    assert "MAILSAC_MAX_MESSAGE_SIZE" in helped.stdout


def test_domains_setting_restricts_recipients(data_dir: Path, database_url: str) -> None:
    import smtplib

    handle = start_server(data_dir, {"DATABASE_URL": database_url,
                                     "MAILSAC_DOMAINS": "allowed.test,*.sub.test"})
    try:
        with smtplib.SMTP("127.0.0.1", handle.smtp_port) as smtp:
            smtp.ehlo()
            smtp.mail("a@example.org")
            assert smtp.rcpt("x@allowed.test")[0] == 250
            assert smtp.rcpt("x@deep.sub.test")[0] == 250
            code, text = smtp.rcpt("x@elsewhere.test")
            assert code == 550
            assert b"does not accept mail for elsewhere.test" in text
    finally:
        assert stop_server(handle) == 0


def test_shutdown_lets_an_in_flight_message_finish(data_dir: Path, database_url: str) -> None:
    import socket

    handle = start_server(data_dir, {"DATABASE_URL": database_url})
    inbox = unique_inbox()
    sock = socket.create_connection(("127.0.0.1", handle.smtp_port), timeout=30)
    reader = sock.makefile("rb")
    try:
        assert reader.readline().startswith(b"220")
        sock.sendall(f"HELO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<{inbox}>\r\nDATA\r\n"
                     .encode())
        replies = [reader.readline()[:3] for _ in range(4)]
        assert replies == [b"250", b"250", b"250", b"354"]
        sock.sendall(b"Subject: in flight\r\n\r\n" + b"x" * 1000 + b"\r\n")
        handle.proc.send_signal(signal.SIGTERM)  # shutdown starts mid-DATA
        time.sleep(0.5)
        sock.sendall(b".\r\n")
        assert reader.readline().startswith(b"250")
        assert reader.readline().startswith(b"421")  # then told the service is going away
    finally:
        reader.close()
        sock.close()
    assert handle.proc.wait(30) == 0
    handle = start_server(data_dir, {"DATABASE_URL": database_url})
    try:
        with _client(handle) as api:
            assert api.get(f"/api/addresses/{inbox}/message-count").json()["count"] == 1
    finally:
        assert stop_server(handle) == 0


def test_admin_cli_changes_reach_the_running_service(
    server: ServerHandle, database_url: str
) -> None:
    import uuid

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
    env["DATABASE_URL"] = database_url

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "mailsac", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done

    account = f"cli-{uuid.uuid4().hex[:8]}"
    domain = f"{account}.test"
    cli("accounts", "create", account, "--message-limit", "500", "--credits", "5")
    assert account in cli("accounts", "list").stdout
    cli("users", "add", f"ann-{account}", "--account", account, "--email", "ann@x.test")
    assert f"ann-{account}" in cli("users", "list", "--account", account).stdout
    key = cli("keys", "create", "--name", "ci", "--account", account,
              "--user", f"ann-{account}").stdout.strip()
    assert "\tuser\t" in cli("keys", "list", "--account", account).stdout
    cli("domains", "add", domain, "--account", account, "--catch-all")
    failed = subprocess.run([sys.executable, "-m", "mailsac", "domains", "add", domain,
                             "--account", "default"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 1 and "owned by another account" in failed.stderr
    # The running server learns about the domain through LISTEN/NOTIFY, without a restart.
    with httpx.Client(base_url=server.http_url, headers={"Mailsac-Key": key},
                      timeout=30) as api:
        assert _wait_until(lambda: api.get("/api/domains").json() != [], 60)
        deliver(server, f"whoever@{domain}", subject="catch me")
        caught = api.get(f"/api/addresses/*@{domain}/messages").json()
        assert [m["subject"] for m in caught] == ["catch me"]
        assert api.get("/api/me").json()["messageLimit"] == 500


def test_pending_webhook_survives_a_restart(data_dir: Path, database_url: str) -> None:
    import socket

    from tests.helpers import Receiver, client, database_of_its_own, new_account

    with socket.socket() as probe:  # a port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A database of its own: the session's other servers would claim the pending delivery
    # while this one is stopped, and could use up its attempts before the receiver is up.
    env = {"DATABASE_URL": database_of_its_own(database_url, "mailsac_restart"),
           "MAILSAC_WEBHOOK_RETRY_BASE": "1"}
    handle = start_server(data_dir, env)
    address = unique_inbox()
    try:
        _, key = new_account(handle)
        with client(handle, key) as api:
            api.post(f"/api/addresses/{address}",
                     json={"webhook": f"http://127.0.0.1:{port}/late"})
            deliver(handle, address, subject="deliver me later")
            assert _wait_until(lambda: api.get(
                f"/api/addresses/{address}/webhook-deliveries").json()[0]["attempts"] >= 1)
            (pending,) = api.get(f"/api/addresses/{address}/webhook-deliveries").json()
            assert pending["status"] == "pending" and pending["lastError"]
    finally:
        assert stop_server(handle) == 0
    receiver = Receiver(port=port)
    try:
        handle = start_server(data_dir, env)
        try:
            (path, _, body), = receiver.wait_for(1, timeout=30)
            assert path == "/late"
            assert b"deliver me later" in body
        finally:
            assert stop_server(handle) == 0
            assert "did not stop" not in handle.log(), handle.log()[-3000:]
    finally:
        receiver.close()


def test_slow_websocket_consumer_is_disconnected_without_slowing_intake(
    data_dir: Path, database_url: str
) -> None:
    import base64
    import socket

    from tests.helpers import client, new_account, send_raw

    handle = start_server(data_dir, {"DATABASE_URL": database_url,
                                     "MAILSAC_WS_SEND_TIMEOUT": "2"})
    try:
        _, key = new_account(handle)
        address = unique_inbox()
        with client(handle, key) as api:
            api.post(f"/api/addresses/{address}", json={"enablews": True})
        # A raw-socket WebSocket client with a tiny receive buffer that stops reading
        # after the handshake (client libraries keep reading into memory on their own).
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(handle.http_url.rsplit(":", 1)[1])))
        nonce = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /incoming-messages?key={key}&addresses={address} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        big = b"Subject: bulk\r\n\r\n" + (b"y" * 998 + b"\r\n") * 400  # ~400 kB
        accepted = sum(send_raw(handle, big, [address]) == {} for _ in range(40))
        assert accepted == 40  # SMTP intake never waited for the stalled WebSocket
        assert _wait_until(
            lambda: "closing a WebSocket client that stopped reading" in handle.log(), 30)
        sock.close()
        deliver(handle, address, subject="still fine")
        with client(handle, key) as api:
            assert api.get(f"/api/addresses/{address}/message-count").json()["count"] == 41
    finally:
        assert stop_server(handle) == 0
