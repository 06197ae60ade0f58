"""POP3 test fixtures: a real server process with POP3 tuned for tests, and a dialog client.

The POP3 tests run against their own ``python -m mailsac serve`` process (same embedded
PostgreSQL as the session server) so that a short failed-login delay, a generous
failed-login allowance and a TLS certificate can be configured without touching the
session server every other test uses.
"""

from __future__ import annotations

import base64
import json
import poplib
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ServerHandle, start_server, stop_server
from tests.tlsutil import make_certificate as tls_certificate


@dataclass
class Pop3Server:
    """A running server and its POP3 port (from the ready file)."""

    handle: ServerHandle
    port: int
    cert: Path | None  # the configured certificate (TLS=1), else None (generated one)

    @property
    def trusted(self) -> Path:
        """The certificate STLS shows: configured, or generated under DATA_DIR/tls."""
        return self.cert or self.handle.data_dir / "tls" / "cert.pem"


def pop3_port(handle: ServerHandle) -> int:
    return int(json.loads((handle.data_dir / "ready.json").read_text())["pop3_port"])


def make_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for localhost and 127.0.0.1 (MAILSAC_TLS_CERT/KEY)."""
    return tls_certificate(directory)


def start_pop3_server(env: dict[str, str]) -> Pop3Server:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-pop3-"))
    cert = None
    if env.pop("TLS", "") == "1":
        made = make_certificate(data_dir)
        if made is not None:
            cert = made[0]
            env = {**env, "MAILSAC_TLS_CERT": str(made[0]), "MAILSAC_TLS_KEY": str(made[1])}
    handle = start_server(data_dir, {"MAILSAC_POP3_PORT": "0", **env})
    return Pop3Server(handle, pop3_port(handle), cert)


def stop_pop3_server(server: Pop3Server) -> None:
    code = stop_server(server.handle)
    assert code == 0, f"server exited with {code}:\n{server.handle.log()}"
    shutil.rmtree(server.handle.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pop3_server(database_url: str) -> Iterator[Pop3Server]:
    started = start_pop3_server({
        "DATABASE_URL": database_url, "MAILSAC_POP3_AUTH_DELAY": "0.05",
        "MAILSAC_POP3_AUTH_FAILURES": "1000", "TLS": "1",
        # these tests log in over loopback in plaintext (test_hardening.py covers STLS-only)
        "MAILSAC_POP3_PLAINTEXT_LOOPBACK": "true"})
    yield started
    stop_pop3_server(started)


@pytest.fixture()
def server(pop3_server: Pop3Server) -> ServerHandle:
    """The POP3 tests' server (SMTP and HTTP of the same process)."""
    return pop3_server.handle


@pytest.fixture()
def pop(pop3_server: Pop3Server) -> Iterator[Callable[[], poplib.POP3]]:
    """Open poplib clients to the POP3 server; all are closed after the test."""
    opened: list[poplib.POP3] = []

    def connect() -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", pop3_server.port, timeout=30)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        try:
            client.close()
        except OSError:
            pass


def plain(user: str, key: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{key}".encode()).decode()


class Dialog:
    """A raw POP3 client: send lines, read status lines and multi-line responses."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> str:
        raw = self.file.readline()
        if not raw:
            raise ConnectionError("server closed the connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.line()

    def block(self) -> list[bytes]:
        """The raw lines (CRLF kept, still stuffed) of a multi-line body up to '.'."""
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("server closed the connection")
            if raw == b".\r\n":
                return lines
            lines.append(raw)

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF)."""
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def admitted_dialogs(port: int, count: int = 1) -> list[Dialog]:
    """``count`` sessions from 127.0.0.1 that the server greeted with +OK, open at once.

    A refused one (over a per-IP cap) is tried again for a while: the server sees a
    connection that the client closed, for instance in the previous test, a moment later.
    After the deadline the refused dialog is returned as it is, for the test to report."""
    held: list[Dialog] = []
    deadline = time.monotonic() + 15
    while len(held) < count:
        d = Dialog(port)
        if d.greeting.startswith("+OK") or time.monotonic() > deadline:
            held.append(d)
            continue
        d.close()
        time.sleep(0.1)
    return held


@pytest.fixture()
def dialog(pop3_server: Pop3Server) -> Iterator[Callable[[], Dialog]]:
    opened: list[Dialog] = []

    def connect() -> Dialog:
        opened.append(Dialog(pop3_server.port))
        return opened[-1]

    yield connect
    for d in opened:
        d.close()
