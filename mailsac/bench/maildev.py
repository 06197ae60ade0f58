"""MailDev as a yardstick: installed from the npm registry, run and measured by our bench.

``python -m mailsac bench --compare maildev`` (see :mod:`mailsac.bench.compare`) floods a
fresh MailDev with the same workload, the same :class:`FloodProcess` and the same open-loop
probe as mailsac. MailDev is a benchmark dependency only: it is installed with
``npm install --prefix ~/.cache/mailsac-bench/maildev/<version>`` on first use (the npm
registry is the only network access) and reused afterwards; nothing global is touched.

What is probed (MailDev's REST API has no per-inbox listing; these are its closest calls):

* *list inbox*: ``GET /api/email?to.address=<inbox>``, MailDev's documented filter by
  recipient. It scans the whole in-memory store and answers full message objects (text and
  HTML bodies, headers), where mailsac answers one inbox's metadata from an index.
* *get message*: ``GET /api/email/<id>`` (the first read also marks the message read).

Durability, as MailDev runs by default (what the comparison measures): the metadata and
parsed bodies live in memory only; the raw ``.eml`` and attachments are written to
``$TMPDIR/maildev`` (here a private temporary directory) *without fsync*, and that
directory is not read back at start-up. MailDev answers ``250`` after the ``.eml`` file is
written (to the page cache), the message parsed and put in memory, so a crash or restart
loses every message it acknowledged. mailsac answers ``250`` after the blob is fsynced
and the metadata committed to PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mailsac.bench.open_loop import Endpoint
from mailsac.childproc import terminate, wait_started

#: 3.0.0 runs on Node.js 20 (two transitive packages declare node >= 22 and only warn).
MAILDEV_VERSION = "3.0.0"
REGISTRY = "https://registry.npmjs.org/"
SUMMARY_PAGE = 200  # MailDev's largest /api/email/summary page

SEMANTICS = {
    "storage": "in memory (metadata and parsed bodies); raw .eml and attachments in "
               "$TMPDIR/maildev, a private temporary directory per run",
    "ack": "250 after the .eml is written (no fsync), the message parsed and stored in memory",
    "durability": "none across a crash or restart: no fsync, the default mail directory is "
                  "not restored at start-up",
    "list_inbox": "GET /api/email?to.address=<inbox>: a scan of the whole store, answering "
                  "full message objects (bodies included)",
    "get_message": "GET /api/email/<id> (the first read marks it read)",
    "spam_score": "none",
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mailsac-bench" / "maildev"


def installed_version(prefix: Path) -> str | None:
    """The MailDev version installed under ``prefix`` (None when there is none)."""
    try:
        data = json.loads((prefix / "node_modules" / "maildev" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def entry_point(prefix: Path) -> Path:
    return prefix / "node_modules" / "maildev" / "dist" / "bin" / "maildev.js"


def node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def install(version: str = MAILDEV_VERSION, root: Path | None = None) -> Path:
    """``npm install`` MailDev ``version`` into the cache (once); its entry script."""
    prefix = (root or cache_dir()) / version
    if installed_version(prefix) == version and entry_point(prefix).exists():
        return entry_point(prefix)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("--compare maildev needs Node.js and npm on the PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--registry", REGISTRY, "--no-audit",
         "--no-fund", "--no-update-notifier", f"maildev@{version}"],
        capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0 or installed_version(prefix) != version:
        raise RuntimeError(f"npm install maildev@{version} failed:\n{done.stderr[-2000:]}")
    return entry_point(prefix)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def command(node: str, script: Path, smtp_port: int, web_port: int,
            max_message_size: int) -> list[str]:
    """MailDev on loopback, headless, no auth, no per-message log lines (like mailsac's
    benchmark server at WARNING), default in-memory storage."""
    return [node, str(script), "--smtp", str(smtp_port), "--web", str(web_port),
            "--ip", "127.0.0.1", "--web-ip", "127.0.0.1",
            "--max-message-size", str(max_message_size), "--silent"]


def endpoints(targets: list[tuple[str, str]], seed: int = 0) -> list[Endpoint]:
    """The probe's list-inbox and get-message over ``(inbox, message id)`` targets in
    MailDev's API (see the module docstring), shuffled like mailsac's probe shuffles them."""
    order = list(targets)
    random.Random(seed).shuffle(order)
    lists = tuple(inbox_query(inbox) for inbox, _ in order)
    gets = tuple(f"/api/email/{quote(mid, safe='')}" for _, mid in order)
    return [Endpoint("list", lists), Endpoint("get", gets)]


@dataclass
class MailDevServer:
    """One MailDev process on free loopback ports with a private temporary directory."""

    script: Path
    max_message_size: int = 64 * 2**20
    node: str = field(default_factory=lambda: shutil.which("node") or "node")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maildev-bench-")))
    proc: subprocess.Popen[bytes] | None = None
    smtp_port: int = 0
    web_port: int = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "maildev.log"

    def start(self, timeout: float = 60.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.smtp_port, self.web_port = free_port(), free_port()
        # TMPDIR: MailDev's default mail directory is os.tmpdir()/maildev, shared by every
        # MailDev on the machine; the cwd has no .maildevrc.json above it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILDEV_")}
        env.update(TMPDIR=str(self.workdir), NODE_ENV="production")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command(self.node, self.script, self.smtp_port, self.web_port,
                        self.max_message_size),
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        wait_started(self.proc, self._ready, what="MailDev", timeout=timeout,
                     log_tail=self.log_tail, interval=0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/api/healthz", timeout=2) as response:
                if response.status != 200:
                    return False
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=2):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> int | None:
        code = terminate(self.proc, timeout) if self.proc is not None else None
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code


def inbox_query(inbox: str) -> str:
    return f"/api/email?to.address={quote(inbox, safe='@')}"


def tokens_of(page: list[dict[str, Any]]) -> dict[str, str]:
    """token → MailDev id for the bench messages in one page of summaries."""
    from mailsac.bench.workload import TOKEN_RE

    found: dict[str, str] = {}
    for item in page:
        match = TOKEN_RE.search(str(item.get("subject", "")))
        if match:
            found[match.group(1)] = str(item["id"])
    return found
