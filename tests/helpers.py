"""Helpers shared by the tests: start/stop a real server process, build and send mail."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from mailsac.childproc import StartTimeout, wait_started
from mailsac.storage.db import ensure_database, run_migrations

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
ADMIN_KEY = "k_testadminkey0000000000000000"


@dataclass
class ServerHandle:
    """A running ``python -m mailsac serve`` process and how to reach it."""

    proc: subprocess.Popen[bytes]
    smtp_port: int
    http_url: str
    key: str
    data_dir: Path
    log_path: Path
    smtps_port: int = -1  # MAILSAC_SMTPS_PORT; -1 when off
    capture_port: int = -1  # MAILSAC_CAPTURE_PORT; -1 when off

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path, env_extra: dict[str, str], timeout: float = 90.0
) -> ServerHandle:
    ready = data_dir / "ready.json"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
    env.pop("DATABASE_URL", None)
    env.update({
        "MAILSAC_DATA_DIR": str(data_dir),
        "MAILSAC_SMTP_PORT": "0",
        "MAILSAC_HTTP_PORT": "0",
        "MAILSAC_POP3_PORT": "0",
        "MAILSAC_BIND": "127.0.0.1",
        "MAILSAC_HOSTNAME": "mx.mailsac.test",
        "MAILSAC_READY_FILE": str(ready),
        "MAILSAC_ADMIN_KEY": ADMIN_KEY,
        "MAILSAC_LOG_LEVEL": "INFO",
        "MAILSAC_WEBHOOK_RETRY_BASE": "0.2",
        # Webhook tests post to local receivers on 127.0.0.1, which the SSRF guard refuses
        # by default; tests of the guard itself pass "false" in env_extra.
        "MAILSAC_WEBHOOK_ALLOW_PRIVATE": "true",
        # Every server of a session shares one database: a cluster of its own keeps its
        # throttle counts to itself (cluster tests pass one name to several servers).
        "MAILSAC_CLUSTER": f"test-{uuid.uuid4().hex[:12]}",
        # The session's PostgreSQL serves every server and test of a busy machine: a slow
        # commit or ping there is load, not an outage. Hang-detection tests pass 1.5.
        "MAILSAC_DB_COMMIT_TIMEOUT": "10",
    })
    env.update(env_extra)
    log_path = data_dir / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailsac", "serve"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_started(proc, ready.exists, what="server", timeout=timeout,
                     log_tail=lambda: log_path.read_text(errors="replace"))
    except StartTimeout:
        proc.kill()
        raise
    ports = json.loads(ready.read_text())
    return ServerHandle(
        proc=proc, smtp_port=ports["smtp_port"],
        http_url=f"http://127.0.0.1:{ports['http_port']}", key=ADMIN_KEY,
        data_dir=data_dir, log_path=log_path, smtps_port=int(ports.get("smtps_port", -1)),
        capture_port=int(ports.get("capture_port", -1)),
    )


def stop_server(handle: ServerHandle, timeout: float = 30.0) -> int:
    """SIGTERM, then wait. A server that does not stop in time is killed (so no test
    leaks a process into the next) and the failure shows where its log ended."""
    if handle.proc.poll() is None:
        handle.proc.send_signal(signal.SIGTERM)
    try:
        return handle.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        handle.proc.kill()
        handle.proc.wait(10)
        tail = handle.log()[-4000:]
        raise AssertionError(f"server did not stop within {timeout} s; log ends:\n{tail}"
                             ) from None


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) +([\w.]+):")
# Background jobs on the session's shared PostgreSQL (retention sweeps, the liveness probe,
# journal replays) can time out when the machine is busy: load, not a fault of the code
# a test exercises. Tests that are about them assert on their own lines.
BACKGROUND_LOGGERS = ("mailsac.storage.",)


def log_failures(log: str, *, levels: tuple[str, ...] = ("ERROR", "CRITICAL"),
                 ignore: tuple[str, ...] = BACKGROUND_LOGGERS) -> list[str]:
    """The server log's records at ``levels`` or carrying a traceback (the first line of
    each), except those of loggers starting with one of ``ignore``."""
    found: list[str] = []
    record: list[str] = []

    def close() -> None:
        if not record:
            return
        head = _RECORD_START.match(record[0])
        level, logger = (head.group(1), head.group(2)) if head else ("", "")
        traceback_at = next((i for i, line in enumerate(record)
                             if line.startswith("Traceback")), None)
        if level not in levels and traceback_at is None:
            return
        # logging puts a record's traceback right under its first line; one further down
        # was printed outside logging and is reported whichever logger came before it
        if logger.startswith(ignore) and traceback_at in (None, 1):
            return
        found.append(record[0])

    for line in log.splitlines():
        if _RECORD_START.match(line):
            close()
            record = [line]
        else:
            record.append(line)
    close()
    return found


def database_of_its_own(database_url: str, prefix: str = "mailsac_own") -> str:
    """A fresh, migrated database on the session's PostgreSQL, for a server whose settings
    change work that any server on its database may pick up (webhook dispatch, leases):
    on the shared session database another server of the session could do that work."""
    url = make_url(database_url).set(database=f"{prefix}_{uuid.uuid4().hex[:10]}")
    rendered = url.render_as_string(hide_password=False)
    asyncio.run(ensure_database(rendered))
    run_migrations(rendered)
    return rendered


def start_private_server(database_url: str, env: dict[str, str],
                         prefix: str = "mailsac-test-") -> ServerHandle:
    """A server of its own (own data directory, given settings) on the session database."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    return start_server(data_dir, {"DATABASE_URL": database_url, **env})


def stop_private_server(handle: ServerHandle) -> None:
    """Stop a :func:`start_private_server` server cleanly and remove its data directory."""
    code = stop_server(handle)
    assert code == 0, f"server exited with {code}:\n{handle.log()}"
    shutil.rmtree(handle.data_dir, ignore_errors=True)


def unique_inbox(domain: str = "example.test") -> str:
    return f"t{uuid.uuid4().hex[:16]}@{domain}"


def send_raw(server: ServerHandle, raw: bytes, to: list[str],
             mail_from: str = "sender@example.org") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        return smtp.sendmail(mail_from, to, raw)


def make_message(to: str, subject: str = "Hello", body: str = "Hi there",
                 html: str | None = None, sender: str = "Alice <alice@example.org>") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def deliver(server: ServerHandle, to: str, **kw: str) -> bytes:
    raw = make_message(to, **kw)
    refused = send_raw(server, raw, [to])
    assert refused == {}
    return raw


def new_account(server: ServerHandle, prefix: str = "acct") -> tuple[str, str]:
    """Create an account with one key through the admin API; return (account id, key)."""
    account = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=server.http_url, headers={"Mailsac-Key": server.key},
                      timeout=30) as admin:
        created = admin.post("/api/admin/accounts", json={"id": account})
        assert created.status_code == 200, created.text
        key = admin.post(f"/api/admin/accounts/{account}/keys", json={"name": "test"})
        assert key.status_code == 200, key.text
        return account, str(key.json()["key"])


def client(server: ServerHandle, key: str | None) -> httpx.Client:
    headers = {"Mailsac-Key": key} if key else {}
    return httpx.Client(base_url=server.http_url, headers=headers, timeout=30)


class ReceiverServer(ThreadingHTTPServer):
    """The HTTP server under the tests' webhook receivers."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128  # a burst of webhooks from several nodes fits the backlog


class Receiver:
    """A real local HTTP server that records POSTs (the outside world a webhook reaches).

    ``fail_first`` requests are answered 500 before it starts answering 200.
    """

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler

        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.arrived:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    failing = len(receiver.requests) <= receiver.fail_first
                    receiver.arrived.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ReceiverServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(
        self, count: int, timeout: float = 30.0
    ) -> list[tuple[str, dict[str, str], bytes]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metric(node: ServerHandle, name: str, labels: str = "") -> float:
    """One sample of ``GET /metrics`` (0 when absent), e.g. ``metric(n, "x_total")``."""
    text = httpx.get(node.http_url + "/metrics", timeout=30).text
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def hub_subscribed(node: ServerHandle, count: int, within: float) -> bool:
    """Whether ``node`` has at least ``count`` hub subscribers (open waits, feeds and
    streams) within ``within`` seconds: a test's concurrent waits are all in place."""
    deadline = time.monotonic() + within
    while await asyncio.to_thread(metric, node, "mailsac_hub_subscribers") < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True
