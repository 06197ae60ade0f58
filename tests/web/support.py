"""Helpers of the web viewer tests: a GET-recording HTTP server, request logs, forms."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from playwright.sync_api import Page, Request

from tests.helpers import ROOT, ServerHandle

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "web"
WAIT_MS = 30_000  # an upper bound for auto-waiting assertions, never a sleep

_PNG = bytes.fromhex(  # a valid 1x1 transparent PNG
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082"
)


class GetRecorder:
    """A real local HTTP server that records every GET (the "outside world" an image in a
    mail points to) and answers with a 1x1 PNG."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.arrived = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with recorder.arrived:
                    recorder.paths.append(self.path)
                    recorder.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(_PNG)))
                self.end_headers()
                self.wfile.write(_PNG)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[str]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.paths) >= count, timeout)
            return list(self.paths)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Traffic:
    """Every request a page made, and console errors (CSP violations show up there)."""

    requests: list[Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("request", lambda r: self.requests.append(r))
        page.on("console", lambda m: self.console_errors.append(m.text)
                if m.type == "error" else None)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def assert_only(self, origin: str) -> None:
        strangers = [u for u in self.urls if not u.startswith(origin + "/")]
        assert not strangers, f"requests left the server's origin: {strangers}"

    def assert_no_csp_violation(self) -> None:
        csp = [m for m in self.console_errors if "Content Security Policy" in m]
        assert not csp, csp


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@contextlib.contextmanager
def signed_in_client(server: ServerHandle, key: str) -> Iterator[httpx.Client]:
    """An httpx client (no JavaScript) that entered ``key`` in the viewer's form."""
    with httpx.Client(base_url=server.http_url, timeout=30) as web:
        answer = web.post("/session", data={"key": key, "next": "/"})
        assert answer.status_code == 303, answer.text
        assert "mailsac_viewer" in web.cookies
        yield web
