"""Crash hygiene for child processes: every child exits by itself when the service dies.

The service's children (the analysis workers of :mod:`mailsac.analysis`; the embedded
PostgreSQL has its own death signal, see :mod:`mailsac.storage.embedded`) must never
outlive it, however it dies (SIGKILL, OOM killer, a crash). A worker blocked on its job
queue would otherwise wait forever: it holds both ends of that queue's pipe itself, so it
never sees end-of-file. And multiprocessing's resource tracker only exits once every
holder of its pipe (the service *and* its workers) is gone.

:func:`die_with_parent` asks Linux to SIGKILL the calling process when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), then checks that the parent is still the expected one: a
parent that died between our fork and the ``prctl`` call would never trigger the signal.
Elsewhere (or if ``prctl`` fails) a daemon thread polls ``getppid()`` once a second.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
POLL_INTERVAL = 1.0


def _prctl_pdeathsig(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where unavailable or refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # pragma: no cover - SIGKILL does not return


def _watch(parent: int, interval: float) -> None:
    while not _orphaned(parent):
        time.sleep(interval)
    _die()


def die_with_parent(parent: int | None = None, *, interval: float = POLL_INTERVAL,
                    use_prctl: bool = True) -> str:
    """Make this process exit (SIGKILL) as soon as ``parent`` dies.

    ``parent`` is the pid of the process that started us (default: the current parent;
    pass the real one when known, e.g. ``multiprocessing.parent_process().pid``, so that a
    parent that is already gone is noticed). Returns the mechanism used: ``"prctl"`` or
    ``"watchdog"`` (``use_prctl=False`` forces the latter, for tests).
    """
    expected = os.getppid() if parent is None else parent
    if use_prctl and _prctl_pdeathsig(signal.SIGKILL):
        mechanism = "prctl"
    else:
        threading.Thread(target=_watch, args=(expected, interval), daemon=True,
                         name="die-with-parent").start()
        mechanism = "watchdog"
    if _orphaned(expected):  # the parent died before the death signal was armed
        _die()
    return mechanism


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM ``proc`` (if still running), wait up to ``timeout`` seconds for it to exit,
    then SIGKILL it; its exit code (None if it never started)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


class StartTimeout(TimeoutError, RuntimeError):
    """A child did not become ready in time (both a TimeoutError and a RuntimeError, so
    callers that caught either for a failed start still do)."""


def wait_started(proc: subprocess.Popen[bytes], ready: Callable[[], bool], *, what: str,
                 timeout: float, log_tail: Callable[[], str], interval: float = 0.05) -> None:
    """Poll ``ready()`` until it is true. RuntimeError if ``proc`` exits first,
    :class:`StartTimeout` after ``timeout`` seconds; both end with the log's last lines."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up (status {proc.returncode}); "
                               f"its log ends:\n{log_tail()}")
        if time.monotonic() > deadline:
            raise StartTimeout(f"{what} did not start within {timeout:g} s; its log ends:"
                               f"\n{log_tail()}")
        time.sleep(interval)
