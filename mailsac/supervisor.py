"""``serve --processes N``: N full nodes on one machine under a small supervisor.

Each child is an ordinary ``python -m mailsac serve`` node (one event loop, the whole
service) on the shared database; all of them bind the same ports with ``SO_REUSEPORT``, so
the kernel spreads new connections over them and one machine's cores are all used. The
supervisor does once what must not race: it resolves the database (the caller,
:func:`mailsac.cli.database`, starts the embedded PostgreSQL and migrates), registers the
first API key, generates the self-signed certificate, and holds each port (a bound,
never-listening ``SO_REUSEPORT`` socket, so port 0 becomes one concrete port that every
child shares and nobody else takes). Children get the resolved settings as environment
variables plus ``--child INDEX:COUNT:SUPERVISOR_PID``; each keeps its own outage journal
(:func:`journal_dir`) and shares the blob directory.

The supervisor writes ``MAILSAC_READY_FILE`` once every child is ready, forwards SIGTERM,
SIGINT (as SIGTERM) and SIGHUP, restarts a child that dies with exponential backoff, and
gives up (exit 1) when a child fails :data:`MAX_START_FAILURES` times in a row before it
becomes ready. Children die with the supervisor (:mod:`mailsac.childproc`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.config import Settings

log = logging.getLogger(__name__)

PORTS = ("smtp_port", "smtps_port", "capture_port", "pop3_port", "http_port")
"""The listener settings every child shares (-1: that listener is off)."""
MAX_START_FAILURES = 5
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
STABLE_AFTER = 60.0  # seconds up after which a crash no longer counts as a crash loop
POLL = 0.1
STOP_MARGIN = 30.0  # on top of MAILSAC_SHUTDOWN_GRACE before a child is killed


@dataclass(frozen=True)
class ChildRole:
    """What ``--child INDEX:COUNT:PARENT`` tells a child about itself."""

    index: int
    count: int
    parent: int

    @classmethod
    def parse(cls, text: str) -> ChildRole:
        index, count, parent = (int(part) for part in text.split(":"))
        return cls(index, count, parent)

    def arg(self) -> str:
        return f"{self.index}:{self.count}:{self.parent}"


def journal_dir(data_dir: Path, index: int) -> Path:
    """Child ``index``'s outage journal: child 0 uses the single-process one, the others a
    sub-directory of it (never shared: a journal is replayed by the process that wrote it)."""
    root = data_dir / "journal"
    return root if index == 0 else root / f"process-{index}"


def settings_env(settings: Settings) -> dict[str, str]:
    """Every resolved setting as its environment variable (a child reads these back)."""
    env: dict[str, str] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        env[f.metadata["env"]] = text
    return env


def _port_holder(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))  # never listen(): connections only reach the children
    except OSError:
        sock.close()
        raise
    return sock


def reserve_ports(settings: Settings) -> tuple[dict[str, int], list[socket.socket]]:
    """The concrete port of every enabled listener, and the sockets that hold them."""
    ports: dict[str, int] = {}
    held: list[socket.socket] = []
    for name in PORTS:
        wanted = int(getattr(settings, name))
        if wanted < 0:
            ports[name] = -1
            continue
        for _ in range(20):  # port 0 with SO_REUSEPORT might hand out a port held above
            sock = _port_holder(settings.bind, wanted)
            port = int(sock.getsockname()[1])
            if port not in ports.values():
                break
            sock.close()
        else:
            raise OSError(f"could not find a free port for {name}")
        held.append(sock)
        ports[name] = port
    return ports, held


async def _prepare_database(settings: Settings, url: str) -> None:
    """The first API key once, and the journals of children that no longer exist."""
    from mailsac.lifecycle import ensure_first_key
    from mailsac.storage.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        await ensure_first_key(engine, settings)
        await replay_orphan_journals(engine, settings.data_dir, settings.processes)
    finally:
        await engine.dispose()


def orphan_journals(data_dir: Path, processes: int) -> list[Path]:
    """Child journals left by an earlier run with more processes than now."""
    root = data_dir / "journal"
    if not root.is_dir():
        return []
    found = []
    for sub in sorted(root.glob("process-*")):
        index = sub.name.removeprefix("process-")
        if sub.is_dir() and (not index.isdigit() or int(index) >= processes):
            found.append(sub)
    return found


async def replay_orphan_journals(engine: AsyncEngine, data_dir: Path, processes: int) -> None:
    """Index what children of an earlier, larger ``--processes`` run journaled. A failure
    (database away) is logged: the files stay, and orphan sweeps stay paused meanwhile."""
    from mailsac.storage.journal import Journal

    for directory in orphan_journals(data_dir, processes):
        journal = Journal(directory)
        if not journal.pending:
            continue
        try:
            await journal.replay(engine)
        except Exception:
            log.exception("could not replay the outage journal %s; it is kept", directory)


def prepare_single(settings: Settings, url: str) -> None:
    """Before a one-process ``serve``: replay journals an earlier ``--processes`` run left."""
    if not orphan_journals(settings.data_dir, 1):
        return

    async def run() -> None:
        from mailsac.storage.db import create_engine

        engine = create_engine(url, pool_size=1)
        try:
            await replay_orphan_journals(engine, settings.data_dir, 1)
        finally:
            await engine.dispose()

    asyncio.run(run())


@dataclass
class _Slot:
    index: int
    ready_file: Path
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    started: float = 0.0
    failures: int = 0  # crashes in a row (before ready, or soon after start)
    restart_at: float | None = None


class Supervisor:
    """Starts, watches, restarts and stops the children of ``serve --processes N``."""

    def __init__(self, settings: Settings, database_url: str, ports: dict[str, int],
                 runtime_dir: Path) -> None:
        self.settings = settings
        self.ports = ports
        self.count = settings.processes
        self.slots = [_Slot(i, runtime_dir / f"child-{i}.ready") for i in range(self.count)]
        self.stop_signal: int | None = None
        self.failed = False
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("MAILSAC_") and k != "DATABASE_URL"}
        child_env = settings_env(settings)
        declared = {f.name: f for f in fields(Settings)}
        for name in PORTS:
            child_env[declared[name].metadata["env"]] = str(ports[name])
        workers = settings.analysis_workers
        if workers == declared["analysis_workers"].default:
            workers = max(1, workers // self.count)  # the default: one per CPU in all
        child_env.update({"DATABASE_URL": database_url, "MAILSAC_PROCESSES": "1",
                          "MAILSAC_ANALYSIS_WORKERS": str(workers)})
        self.env = {**base, **child_env}

    # -- signals --------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        for slot in self.slots:  # reload certificates everywhere
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGHUP)

    # -- children -------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        slot.ready_file.unlink(missing_ok=True)
        role = ChildRole(slot.index, self.count, os.getpid())
        env = {**self.env, "MAILSAC_READY_FILE": str(slot.ready_file)}
        # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
        # stops the children in order (SIGTERM) instead of racing them.
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsac", "serve", "--child", role.arg()],
            env=env, stdin=subprocess.DEVNULL, process_group=0)
        slot.ready, slot.started, slot.restart_at = False, time.monotonic(), None
        log.info("started child %d/%d (pid %d)", slot.index + 1, self.count, slot.proc.pid)

    def _check(self, slot: _Slot, now: float) -> None:
        if self.stop_signal is not None:
            return  # stopping: exits are expected now
        if slot.proc is None:
            if slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot)
            return
        code = slot.proc.poll()
        if code is None:
            if not slot.ready and slot.ready_file.exists():
                slot.ready = True
                log.info("child %d/%d (pid %d) is ready", slot.index + 1, self.count,
                         slot.proc.pid)
            return
        early = not slot.ready
        if early or now - slot.started < STABLE_AFTER:
            slot.failures += 1
        else:
            slot.failures = 1
        how = f"signal {-code}" if code < 0 else f"code {code}"
        if early and slot.failures >= MAX_START_FAILURES:
            log.error("child %d/%d exited with %s before it was ready, %d times in a row: "
                      "giving up", slot.index + 1, self.count, how, slot.failures)
            self.failed = True
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
        log.error("child %d/%d (pid %d) exited unexpectedly with %s%s; restarting it in "
                  "%.1f s", slot.index + 1, self.count, slot.proc.pid, how,
                  " before it was ready" if early else "", delay)
        slot.proc, slot.ready, slot.restart_at = None, False, now + delay

    def _write_ready_file(self) -> None:
        path = self.settings.ready_file
        if not path:
            return
        partial = f"{path}.partial"
        with open(partial, "w") as f:
            json.dump({name: self.ports[name] for name in
                       ("smtp_port", "http_port", "pop3_port", "smtps_port", "capture_port")}, f)
        os.replace(partial, path)

    def _stop_children(self) -> int:
        """SIGTERM to every child, wait (grace + margin), kill stragglers; 0 if all ended
        by themselves."""
        alive = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + STOP_MARGIN
        code = 0
        for proc in alive:
            try:
                result = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("child pid %d did not stop in time: killing it", proc.pid)
                proc.kill()
                proc.wait()
                code = 1
                continue
            # A child still starting up may die of the signal itself: that is a stop too.
            if result not in (0, -signal.SIGTERM, -signal.SIGINT, 130):
                log.error("child pid %d exited with %s on shutdown", proc.pid, result)
                code = 1
        return code

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        announced = False
        try:
            for slot in self.slots:
                self._spawn(slot)
            while self.stop_signal is None and not self.failed:
                now = time.monotonic()
                for slot in self.slots:
                    self._check(slot, now)
                if not announced and all(s.ready for s in self.slots):
                    self._write_ready_file()
                    announced = True
                    log.info("all %d processes ready: SMTP %s:%d, HTTP http://%s:%d",
                             self.count, self.settings.bind, self.ports["smtp_port"],
                             self.settings.bind, self.ports["http_port"])
                time.sleep(POLL)
            if self.stop_signal is not None:
                log.info("shutdown requested (signal %d): stopping %d processes",
                         self.stop_signal, self.count)
        finally:
            code = self._stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else code


def supervise(settings: Settings, database_url: str) -> int:
    """Prepare once, run the children until a stop signal; the process exit code."""
    from mailsac.listeners.tls import CertificateStore

    CertificateStore.from_settings(settings).load()  # generated here, not by N children
    asyncio.run(_prepare_database(settings, database_url))
    ports, held = reserve_ports(settings)
    runtime_dir = Path(tempfile.mkdtemp(prefix="mailsac-supervisor-"))
    try:
        return Supervisor(settings, database_url, ports, runtime_dir).run()
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
