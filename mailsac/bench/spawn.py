"""A fresh local ``python -m mailsac serve`` for ``--spawn``, and /proc sampling of a server.

The spawned server gets its own temporary data directory, the embedded PostgreSQL with
its durable defaults (fsync on: we measure what users run), an admin key, and limits
generous enough that rate limiting is not what the benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailsac.childproc import terminate, wait_started

#: ``0`` disables a limit (see MAILSAC_LIMITS in the README).
GENEROUS_LIMITS = ("ip=0,network=0,sender_org=0,reply_to_org=0,rcpt_public=0,rcpt_private=0,"
                   "ip_connections=0")

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_env(data_dir: Path, key: str, max_message_size: int) -> dict[str, str]:
    """The environment of a spawned benchmark server (on top of ours, minus MAILSAC_*)."""
    return {
        "MAILSAC_DATA_DIR": str(data_dir),
        "MAILSAC_BIND": "127.0.0.1",
        "MAILSAC_SMTP_PORT": "0",
        "MAILSAC_HTTP_PORT": "0",
        "MAILSAC_POP3_PORT": "0",  # every listener on a free port: runs may overlap
        "MAILSAC_SMTPS_PORT": "0",
        "MAILSAC_CAPTURE_PORT": "0",
        "MAILSAC_HOSTNAME": "mx.bench.test",
        "MAILSAC_READY_FILE": str(data_dir / "ready.json"),
        "MAILSAC_ADMIN_KEY": key,
        "MAILSAC_LIMITS": GENEROUS_LIMITS,
        "MAILSAC_PUBLIC_INBOX_LIMIT": "1000000",
        "MAILSAC_PUBLIC_MAX_AGE_HOURS": "100000",
        "MAILSAC_MAX_MESSAGE_SIZE": str(max_message_size),
        "MAILSAC_MAX_CONNECTIONS": "5000",
        "MAILSAC_MAX_CONNECTIONS_PER_IP": "5000",
        "MAILSAC_MAX_CONNECTIONS_PER_NETWORK": "5000",
        "MAILSAC_LOG_LEVEL": "WARNING",
    }


@dataclass
class SpawnedServer:
    """``python -m mailsac serve`` on loopback with a temporary data directory."""

    max_message_size: int = 25 * 1024 * 1024
    extra_env: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    key: str = field(default_factory=lambda: "k_bench" + secrets.token_hex(16))
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mailsac-bench-")))
    proc: subprocess.Popen[bytes] | None = None
    smtp_port: int = 0
    http_port: int = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def database_url(self) -> str | None:
        """The embedded PostgreSQL's URL while the server runs (for seeding)."""
        from mailsac.storage.embedded import running_server_url

        return running_server_url(self.data_dir / "postgres", "mailsac")

    def start(self, timeout: float = 120.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()  # and remove the data directory
            raise

    def _start(self, timeout: float) -> None:
        ready = self.data_dir / "ready.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
        env.pop("DATABASE_URL", None)
        env.update(server_env(self.data_dir, self.key, self.max_message_size))
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailsac", "serve"], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)
        wait_started(self.proc, ready.exists, what="mailsac", timeout=timeout,
                     log_tail=self.log_tail)
        time.sleep(0.05)  # the ready file is written in one go, but be safe
        ports = json.loads(ready.read_text())
        self.smtp_port, self.http_port = int(ports["smtp_port"]), int(ports["http_port"])

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int | None:
        code = terminate(self.proc, timeout) if self.proc is not None else None
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code


# -- /proc sampling ---------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` in bytes (None if the process is gone or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid`` from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` itself and of all its live descendants (e.g. PostgreSQL)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        found = _stat(int(entry))
        if found is not None:
            children.setdefault(found[0], []).append(int(entry))
            cpu[int(entry)] = found[1]
    own = cpu.get(pid, 0.0)
    total, stack = 0.0, list(children.get(pid, []))
    while stack:
        child = stack.pop()
        total += cpu.get(child, 0.0)
        stack.extend(children.get(child, []))
    return own, total


@dataclass
class Usage:
    """Resource use of the server over one phase."""

    rss_start: int | None
    rss_max: int | None
    rss_end: int | None
    cpu_pct: float | None
    children_cpu_pct: float | None
    cpu_seconds: float | None = None  # the server and all its descendants together

    def to_json(self) -> dict[str, float | None]:
        def mib(v: int | None) -> float | None:
            return None if v is None else round(v / 2**20, 1)

        return {"rss_start_mib": mib(self.rss_start), "rss_max_mib": mib(self.rss_max),
                "rss_end_mib": mib(self.rss_end), "cpu_pct": self.cpu_pct,
                "db_cpu_pct": self.children_cpu_pct,
                "cpu_s": None if self.cpu_seconds is None else round(self.cpu_seconds, 3)}


class Sampler:
    """Samples a server's RSS every ``interval`` seconds; CPU by snapshots at phase edges."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-sampler")

    async def _run(self) -> None:
        while True:
            rss = rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def mark(self) -> tuple[float, float, float]:
        """A phase starts (or ends) now: (monotonic time, own CPU s, children CPU s)."""
        own, children = cpu_seconds(self.pid)
        rss = rss_bytes(self.pid)
        now = time.monotonic()
        if rss is not None:
            self.samples.append((now, rss))
        return now, own, children

    def usage(self, start: tuple[float, float, float],
              end: tuple[float, float, float] | None = None) -> Usage:
        end = end or self.mark()
        wall = max(1e-9, end[0] - start[0])
        window = [rss for t, rss in self.samples if start[0] <= t <= end[0]]
        return Usage(
            rss_start=window[0] if window else None, rss_max=max(window) if window else None,
            rss_end=window[-1] if window else None,
            cpu_pct=round(100 * (end[1] - start[1]) / wall, 1),
            children_cpu_pct=round(100 * (end[2] - start[2]) / wall, 1),
            cpu_seconds=end[1] + end[2] - start[1] - start[2])

    def timeline(self, points: int = 60) -> list[tuple[float, float]]:
        """(seconds since the first sample, RSS MiB), thinned to about ``points`` entries."""
        if not self.samples:
            return []
        t0 = self.samples[0][0]
        step = max(1, len(self.samples) // points)
        picked = self.samples[::step] + ([self.samples[-1]] if len(self.samples) % step else [])
        return [(round(t - t0, 1), round(rss / 2**20, 1)) for t, rss in picked]
