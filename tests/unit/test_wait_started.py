"""childproc.wait_started: the one start-up wait of the bench, MailDev and LocalService."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailsac.childproc import StartTimeout, terminate, wait_started


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_returns_once_ready(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    proc = _child(f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(30)")
    try:
        wait_started(proc, flag.exists, what="child", timeout=30, log_tail=lambda: "")
        assert flag.exists() and proc.poll() is None
    finally:
        terminate(proc, 5)


def test_a_child_that_exits_first_is_a_runtime_error_with_its_status_and_log() -> None:
    proc = _child("raise SystemExit(3)")
    with pytest.raises(RuntimeError, match=r"child exited at start-up \(status 3\).*\nthe end"):
        wait_started(proc, lambda: False, what="child", timeout=30,
                     log_tail=lambda: "the end")


def test_a_slow_child_times_out_as_both_timeout_and_runtime_error() -> None:
    proc = _child("import time; time.sleep(30)")
    try:
        with pytest.raises(StartTimeout, match=r"did not start within 0.2 s.*\nlast lines") \
                as raised:
            wait_started(proc, lambda: False, what="child", timeout=0.2,
                         log_tail=lambda: "last lines")
        assert isinstance(raised.value, TimeoutError)
        assert isinstance(raised.value, RuntimeError)
    finally:
        terminate(proc, 5)
