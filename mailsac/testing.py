"""A throwaway mailsac for test suites (used by the pytest plugin; usable on its own).

:class:`LocalService` starts an embedded PostgreSQL (non-durable fast settings) in a
temporary directory, migrates it, and runs ``python -m mailsac serve`` against it on free
loopback ports with an admin key it generates; :meth:`LocalService.stop` stops both and
removes the directory. :func:`send_mail` sends a simple message over SMTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import uuid
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from mailsac.childproc import terminate, wait_started
from mailsac.storage.embedded import FAST_SETTINGS, EmbeddedPostgres

#: Rate limits off: a test suite sends bursts of mail from one address (0 disables).
TEST_LIMITS = ("ip=0,network=0,sender_org=0,reply_to_org=0,rcpt_public=0,rcpt_private=0,"
               "ip_connections=0")


class LocalService:
    """``python -m mailsac serve`` on 127.0.0.1 with its own embedded PostgreSQL.

    ``env``: extra ``MAILSAC_*`` settings for the server. The server's output goes to
    ``log_path``; a start-up failure raises ``RuntimeError`` with its last lines."""

    def __init__(self, env: dict[str, str] | None = None, *, key: str | None = None,
                 keep: bool = False) -> None:
        self.extra_env = dict(env or {})
        self.key = key or "k_test" + secrets.token_hex(16)
        self.keep = keep
        self.data_dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self._pg: EmbeddedPostgres | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http_port']}"

    @property
    def smtp_host(self) -> str:
        return "127.0.0.1"

    @property
    def smtp_port(self) -> int:
        return self.ports["smtp_port"]

    @property
    def pop3_port(self) -> int:
        return self.ports["pop3_port"]

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None, "not started"
        return self.data_dir / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> LocalService:
        """Start PostgreSQL and the server; return once the server listens."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        # Under /tmp (short Unix socket paths; a 0700 parent would lock PostgreSQL out when
        # it runs as an unprivileged account, see mailsac.storage.embedded).
        self.data_dir = Path(tempfile.mkdtemp(prefix="mailsac-throwaway-"))
        pg = EmbeddedPostgres(self.data_dir / "postgres", settings=FAST_SETTINGS)
        self._pg = pg
        pg.start(timeout)  # from this (the main) thread: the death signal follows it
        database_url = pg.url("mailsac")
        _prepare_database(database_url)
        ready = self.data_dir / "ready.json"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MAILSAC_") and k != "DATABASE_URL"}
        env.update({
            "DATABASE_URL": database_url,
            "MAILSAC_DATA_DIR": str(self.data_dir / "data"),
            "MAILSAC_BIND": "127.0.0.1",
            "MAILSAC_SMTP_PORT": "0", "MAILSAC_HTTP_PORT": "0", "MAILSAC_POP3_PORT": "0",
            "MAILSAC_HOSTNAME": "mx.mailsac.test",
            "MAILSAC_READY_FILE": str(ready),
            "MAILSAC_ADMIN_KEY": self.key,
            "MAILSAC_LIMITS": TEST_LIMITS,
            "MAILSAC_LOG_LEVEL": "INFO",
            **self.extra_env,
        })
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailsac", "serve"], cwd=self.data_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_started(self.proc, ready.exists, what="mailsac", timeout=timeout,
                     log_tail=self.log_tail)
        self.ports = {k: int(v) for k, v in json.loads(ready.read_text()).items()}

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the server (SIGKILL if it does not stop), stop PostgreSQL, clean up."""
        code: int | None = None
        if self.proc is not None:
            code = terminate(self.proc, timeout)
            self.proc = None
        if self._pg is not None:
            self._pg.stop()
            self._pg = None
        if self.data_dir is not None and not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def send(self, to: str, subject: str = "Hello", text: str = "Hi there", *,
             html: str | None = None, sender: str = "Tester <tester@example.org>") -> str:
        """Send one message to this server over SMTP; returns its Message-ID."""
        return send_mail(self.smtp_host, self.smtp_port, to, subject, text, html=html,
                         sender=sender)


def _prepare_database(url: str) -> None:
    """Create and migrate the database, in a worker thread so that a running event loop
    in the caller's thread (pytest-asyncio, notebooks) is no obstacle."""
    from mailsac.storage.db import ensure_database, run_migrations

    failure: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(ensure_database(url))
            run_migrations(url)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=work, name="mailsac-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def send_mail(host: str, port: int, to: str, subject: str = "Hello", text: str = "Hi there",
              *, html: str | None = None, sender: str = "Tester <tester@example.org>") -> str:
    """Send a text (and optional HTML) message with smtplib; returns its Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id = f"<{uuid.uuid4().hex}@mailsac.test>"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.send_message(msg)
    return message_id
