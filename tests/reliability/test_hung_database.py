"""Issue 14 finding 17: a *hung* database (every PostgreSQL process frozen with SIGSTOP, as
in a network partition) is detected about as fast as a refused connection: SMTP keeps
answering 250 (journaled) with short gaps, the API answers 503 within the README's 5 s,
and after SIGCONT every acknowledged message is readable exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from mailsac.storage.embedded import FAST_SETTINGS, EmbeddedPostgres
from tests.e2e.test_crash_hygiene import descendants
from tests.helpers import client, start_server, stop_server
from tests.reliability.test_faults import LIMITS, Flood, reconcile

HANG = 6.0


def _signal_all(pg: EmbeddedPostgres, sig: int) -> None:
    """The postmaster and every backend (backends run in sessions of their own)."""
    assert pg.proc is not None
    for pid in [pg.proc.pid, *descendants(pg.proc.pid)]:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


@pytest.mark.slow
def test_hung_database_is_journaled_fast_and_reconciled() -> None:
    pg_dir = tempfile.mkdtemp(prefix="mailsac-hung-pg-")
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-hung-"))
    pg = EmbeddedPostgres(pg_dir, settings=FAST_SETTINGS)  # never the session's server
    pg.start()
    handle = start_server(data_dir, {"DATABASE_URL": pg.url("mailsac"), **LIMITS,
                                     "MAILSAC_DB_COMMIT_TIMEOUT": "1.5"})  # the default
    inbox = f"hung-{uuid.uuid4().hex[:10]}@faults.test"
    try:
        with Flood(handle, inbox) as flood, client(handle, handle.key) as api:
            flood.wait_for_acks(20)
            samples: list[tuple[float, int]] = []
            stopped = time.monotonic()

            def sample() -> None:  # in its own thread: API waits must not skew it
                while time.monotonic() - stopped < HANG:
                    samples.append((time.monotonic(), len(flood.acked)))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            _signal_all(pg, signal.SIGSTOP)
            sampler.start()
            try:
                slowest = 0.0
                while time.monotonic() - stopped < HANG - 1:  # API requests while it hangs
                    started = time.monotonic()
                    listed = api.get(f"/api/addresses/{inbox}/messages")
                    slowest = max(slowest, time.monotonic() - started)
                    assert listed.status_code == 503, listed.text
                    assert listed.json()["error"] == "Service Unavailable"
                    time.sleep(0.3)
                sampler.join(HANG + 5)
            finally:
                _signal_all(pg, signal.SIGCONT)
            assert slowest < 5.0, f"an API request took {slowest:.1f} s"
            gap, last_t, last_n = 0.0, stopped, samples[0][1]
            for t, n in samples:
                if n != last_n:
                    gap, last_t, last_n = max(gap, t - last_t), t, n
            assert samples[-1][1] > samples[0][1] + 5, "SMTP stopped accepting"
            assert gap < 4.5, f"SMTP accepted nothing for {gap:.1f} s"
            flood.wait_for_acks(len(flood.acked) + 10)  # and after the hang
        deadline = time.monotonic() + 60
        while list((data_dir / "journal").glob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list((data_dir / "journal").glob("*.jsonl")), "journal never replayed"
        assert reconcile(handle, inbox, flood.acked) >= len(flood.acked)
        print(f"longest SMTP gap during the hang: {gap:.2f} s, slowest API: {slowest:.2f} s")
    finally:
        if pg.proc is not None:
            _signal_all(pg, signal.SIGCONT)
        stop_server(handle)
        pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
