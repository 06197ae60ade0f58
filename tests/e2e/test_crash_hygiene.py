"""Crash hygiene: when the service dies, however it dies, every child process goes too.

The real server (embedded PostgreSQL, two analysis worker processes, multiprocessing's
resource tracker) is SIGKILLed; every process it started must be gone within seconds, and
a restart on the same data directory must start cleanly (no leftover to find or fight).
"""

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

from tests.helpers import ADMIN_KEY, ROOT, deliver, start_server, stop_server, unique_inbox


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a process from /proc, or None when it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), fields[0]


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (walks the ppid links in /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            children.setdefault(stat[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    except OSError:
        return "?"


def wait_all_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailsac-crash-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_leaves_no_child_process_and_restart_is_clean(data_dir: Path) -> None:
    env = {"MAILSAC_ANALYSIS_WORKERS": "2"}  # embedded PostgreSQL: no DATABASE_URL
    handle = start_server(data_dir, env)
    inbox = unique_inbox()
    survivors: list[int] = []
    try:
        deliver(handle, inbox, subject="before the crash")  # the workers are in use
        children = descendants(handle.proc.pid)
        commands = [_cmdline(p) for p in children]
        assert sum("spawn_main" in c for c in commands) == 2, commands
        assert any("resource_tracker" in c for c in commands), commands
        assert any("postgres" in c for c in commands), commands
        handle.proc.send_signal(signal.SIGKILL)
        handle.proc.wait(10)
        survivors = wait_all_gone(children, timeout=60)  # a checkpoint under load is slow
        assert not survivors, [(p, _cmdline(p)) for p in survivors]
    finally:
        for pid in survivors:  # never leave our own orphans behind, even on failure
            os.kill(pid, signal.SIGKILL)
        if handle.proc.poll() is None:
            handle.proc.kill()
    restarted = start_server(data_dir, env)  # at once: no leftover may be in the way
    try:
        with httpx.Client(base_url=restarted.http_url, headers={"Mailsac-Key": ADMIN_KEY},
                          timeout=30) as api:
            (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
            assert message["subject"] == "before the crash"
    finally:
        assert stop_server(restarted) == 0, restarted.log()[-3000:]


_GRANDCHILD = """
import os, sys, time
from mailsac.childproc import die_with_parent
print(die_with_parent(int(sys.argv[1]), interval=0.1, use_prctl=sys.argv[2] == "1"),
      flush=True)
time.sleep(60)
"""

_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid()),
                          sys.argv[2]], stdout=sys.stdout)
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("use_prctl", [True, False], ids=["prctl", "watchdog"])
def test_die_with_parent_kills_the_child_when_its_parent_dies(use_prctl: bool) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _GRANDCHILD, "1" if use_prctl else "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        mechanism = parent.stdout.readline().strip()
        expected = "prctl" if use_prctl and sys.platform.startswith("linux") else "watchdog"
        assert mechanism == expected
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        assert not wait_all_gone([child], timeout=5), "the child outlived its parent"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
