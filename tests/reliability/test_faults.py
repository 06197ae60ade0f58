"""Fault injection against the real server process: SIGKILL mid-flood, the database stopped
and restarted mid-flood, and a full disk. Each ends with an exact reconciliation: every
message that got 250 is present exactly once and intact."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsac.storage.embedded import FAST_SETTINGS, EmbeddedPostgres
from tests.flood import Flood, reconcile
from tests.helpers import client, make_message, start_server, stop_server


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mailsac-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


LIMITS = {"MAILSAC_PUBLIC_INBOX_LIMIT": "100000",
          "MAILSAC_LIMITS": "rcpt_public=0,ip=0,network=0,sender_org=0"}


def test_sigkill_mid_flood_loses_nothing_acknowledged(data_dir: Path, database_url: str) -> None:
    env = {"DATABASE_URL": database_url, **LIMITS}
    handle = start_server(data_dir, env)
    inbox = f"kill-{uuid.uuid4().hex[:10]}@faults.test"
    with Flood(handle, inbox) as flood:
        flood.wait_for_acks(40)
        handle.proc.send_signal(signal.SIGKILL)
        handle.proc.wait(10)
    restarted = start_server(data_dir, env)
    try:
        total = reconcile(restarted, inbox, flood.acked)
        assert total >= len(flood.acked) >= 40
    finally:
        assert stop_server(restarted) == 0


def test_sigterm_under_load_loses_nothing_acknowledged(data_dir: Path,
                                                      database_url: str) -> None:
    env = {"DATABASE_URL": database_url, **LIMITS}
    handle = start_server(data_dir, env)
    inbox = f"term-{uuid.uuid4().hex[:10]}@faults.test"
    with Flood(handle, inbox) as flood:
        flood.wait_for_acks(40)
        handle.proc.send_signal(signal.SIGTERM)  # graceful shutdown in the middle of it
        assert handle.proc.wait(60) == 0, handle.log()[-6000:]
    restarted = start_server(data_dir, env)
    try:
        assert reconcile(restarted, inbox, flood.acked) >= 40
        assert "mailsac stopped" in handle.log()
    finally:
        assert stop_server(restarted) == 0


def test_database_outage_is_journaled_then_indexed(data_dir: Path) -> None:
    pg_dir = tempfile.mkdtemp(prefix="mailsac-faults-pg-")
    pg = EmbeddedPostgres(pg_dir, settings=FAST_SETTINGS)
    pg.start()
    handle = start_server(data_dir, {"DATABASE_URL": pg.url("mailsac"),
                                     "MAILSAC_JOURNAL_MAX_AGE": "4", **LIMITS})
    inbox = f"outage-{uuid.uuid4().hex[:10]}@faults.test"
    try:
        with Flood(handle, inbox) as flood:
            flood.wait_for_acks(20)
            pg.stop()  # the database goes away mid-flood
            before = len(flood.acked)
            flood.wait_for_acks(before + 20)  # still accepting: journaled
            with client(handle, handle.key) as api:
                started = time.monotonic()
                listed = api.get(f"/api/addresses/{inbox}/messages")
                assert listed.status_code == 503 and time.monotonic() - started < 15
                assert listed.json()["error"] == "Service Unavailable"
                health = api.get("/healthz")
                assert health.status_code == 503 and health.json()["status"] == "degraded"
            time.sleep(5)  # past MAILSAC_JOURNAL_MAX_AGE: the service must now refuse
            refused_from = len(flood.replies)
            deadline = time.monotonic() + 15
            while 421 not in flood.replies[refused_from:] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert 421 in flood.replies[refused_from:], "never refused beyond the journal age"
            assert any(p.suffix == ".jsonl" for p in (data_dir / "journal").iterdir())
            pg.start()  # the database comes back; the journal is indexed by itself
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and list((data_dir / "journal").glob("*.jsonl")):
                time.sleep(0.1)
            assert not list((data_dir / "journal").glob("*.jsonl"))
            flood.wait_for_acks(len(flood.acked) + 5)  # and accepts normally again
        total = reconcile(handle, inbox, flood.acked)
        assert total >= len(flood.acked)
        assert "outage journal replayed" in handle.log()
    finally:
        stop_server(handle)
        pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def test_full_disk_answers_452_and_recovers(data_dir: Path, database_url: str) -> None:
    disk = data_dir / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    try:
        handle = start_server(disk, {"DATABASE_URL": database_url, **LIMITS})
        inbox = f"full-{uuid.uuid4().hex[:10]}@faults.test"
        try:
            with client(handle, handle.key) as api:
                big = make_message(inbox, subject="filler", body="z" * 600_000)
                codes = []
                for _ in range(12):
                    with smtplib.SMTP("127.0.0.1", handle.smtp_port) as smtp:
                        try:
                            smtp.sendmail("a@example.org", [inbox], big)
                            codes.append(250)
                        except smtplib.SMTPDataError as exc:
                            codes.append(exc.smtp_code)
                            assert exc.smtp_error.startswith(b"4.3.1")
                assert 452 in codes and codes[0] == 250
                stored = api.get(f"/api/addresses/{inbox}/messages").json()
                assert len(stored) == codes.count(250)  # reads still work
                for message in stored:  # make room again
                    api.delete(f"/api/addresses/{inbox}/messages/{message['_id']}")
                small = make_message(inbox, subject="after recovery")
                with smtplib.SMTP("127.0.0.1", handle.smtp_port) as smtp:
                    assert smtp.sendmail("a@example.org", [inbox], small) == {}
                assert api.get(f"/api/addresses/{inbox}/messages").json()[0]["subject"] \
                    == "after recovery"
        finally:
            stop_server(handle)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
