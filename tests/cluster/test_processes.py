"""``serve --processes 2``: two full nodes behind one supervisor, sharing every port.

Which process answered is observable: ``/healthz`` names its node (``host:pid:id``), and
/proc tells which process holds the server side of an SMTP connection.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    ADMIN_KEY,
    ServerHandle,
    make_message,
    start_server,
    stop_server,
    unique_inbox,
)

GENEROUS = {"MAILSAC_LIMITS": "ip=0,network=0,sender_org=0,reply_to_org=0,rcpt_public=0,"
            "rcpt_private=0,ip_connections=0", "MAILSAC_PROCESSES": "2",
            "MAILSAC_ANALYSIS_WORKERS": "1"}


# -- /proc helpers ----------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[1])


def descendants(pid: int) -> set[int]:
    parents = {int(p): _ppid(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    found, stack = set(), [pid]
    while stack:
        parent = stack.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def children(handle: ServerHandle) -> set[int]:
    """The supervisor's node processes (``serve --child …``)."""
    found = set()
    for pid in descendants(handle.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--child" in argv and _ppid(pid) == handle.proc.pid:
            found.add(pid)
    return found


def established_on(pid: int, port: int) -> int:
    """Established TCP connections whose local port is ``port`` held by ``pid``."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "01" and cols[9] in inodes:
                count += 1
    return count


def node_pid(http_url: str) -> int:
    """The pid of the process that answered ``/healthz`` on a new connection."""
    with httpx.Client(base_url=http_url, timeout=30) as client:
        response = client.get("/healthz")
    assert response.status_code == 200, response.text
    return int(response.json()["node"].split(":")[-2])


def wait_until(predicate: object, timeout: float = 60.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-procs-"))
    handle = start_server(data_dir, {"DATABASE_URL": database_url, **GENEROUS})
    yield handle
    code = stop_server(handle, timeout=60)
    assert code == 0, handle.log()[-4000:]
    shutil.rmtree(data_dir, ignore_errors=True)


def _open_smtp(handle: ServerHandle, count: int) -> list[smtplib.SMTP]:
    sessions = []
    for _ in range(count):
        smtp = smtplib.SMTP("127.0.0.1", handle.smtp_port, timeout=30)
        smtp.ehlo("client.example.org")
        sessions.append(smtp)
    return sessions


# -- tests ------------------------------------------------------------------------------


def test_both_children_serve_http_and_smtp_on_the_same_ports(cluster: ServerHandle) -> None:
    nodes = children(cluster)
    assert len(nodes) == 2 and cluster.proc.pid not in nodes
    answered = {node_pid(cluster.http_url) for _ in range(40)}
    assert answered == nodes  # 40 new connections: both children took some
    sessions = _open_smtp(cluster, 24)
    try:
        per_child = {pid: established_on(pid, cluster.smtp_port) for pid in nodes}
    finally:
        for smtp in sessions:
            smtp.quit()
    assert sum(per_child.values()) == 24, per_child
    assert all(n > 0 for n in per_child.values()), per_child


def test_mail_over_many_connections_is_all_readable(cluster: ServerHandle) -> None:
    inboxes = [unique_inbox() for _ in range(30)]
    for inbox in inboxes:  # one connection per message: both children receive mail
        with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
            assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    for inbox in inboxes:  # read back over new connections (each child reads what both wrote)
        with httpx.Client(base_url=cluster.http_url, timeout=30,
                          headers={"Mailsac-Key": ADMIN_KEY}) as client:
            listed = client.get(f"/api/addresses/{inbox}/messages")
        assert listed.status_code == 200 and len(listed.json()) == 1, listed.text


def test_a_killed_child_is_restarted_and_the_service_keeps_answering(
        cluster: ServerHandle) -> None:
    before = children(cluster)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim))
    survivors = before - {victim}
    for _ in range(10):  # the survivor answers meanwhile
        assert node_pid(cluster.http_url) in survivors | children(cluster)
    wait_until(lambda: len(children(cluster) - before) == 1)
    (newcomer,) = children(cluster) - before
    # the replacement serves once it is ready; new connections then reach both again
    wait_until(lambda: node_pid(cluster.http_url) == newcomer)
    inbox = unique_inbox()
    with smtplib.SMTP("127.0.0.1", cluster.smtp_port, timeout=30) as smtp:
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
    with httpx.Client(base_url=cluster.http_url, headers={"Mailsac-Key": ADMIN_KEY},
                      timeout=30) as client:
        assert len(client.get(f"/api/addresses/{inbox}/messages").json()) == 1
    assert f"exited unexpectedly with signal {int(signal.SIGKILL)}" in cluster.log()


def test_embedded_postgres_and_sigterm_leaves_no_process_behind() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-procs-pg-"))
    # No DATABASE_URL: one embedded PostgreSQL; no admin key: the first one is made once.
    handle = start_server(data_dir, {**GENEROUS, "MAILSAC_ADMIN_KEY": ""})
    try:
        printed = [line for line in handle.log().splitlines() if "shown only once" in line]
        assert len(printed) == 1, printed
        key = printed[0].rsplit(" ", 1)[1]
        tree = descendants(handle.proc.pid)
        nodes = children(handle)
        assert len(nodes) == 2
        assert any(b"postgres" in Path(f"/proc/{p}/cmdline").read_bytes() for p in tree
                   if alive(p))
        inbox = unique_inbox()
        with smtplib.SMTP("127.0.0.1", handle.smtp_port, timeout=30) as smtp:
            assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
        answered = set()
        for _ in range(40):
            with httpx.Client(base_url=handle.http_url, timeout=30,
                              headers={"Mailsac-Key": key}) as client:
                listed = client.get(f"/api/addresses/{inbox}/messages")
                assert len(listed.json()) == 1, listed.text
                answered.add(int(client.get("/healthz").json()["node"].split(":")[-2]))
        assert answered == nodes
    finally:
        code = stop_server(handle, timeout=90)
    assert code == 0, handle.log()[-4000:]
    wait_until(lambda: not any(alive(p) for p in tree), timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_children_failing_at_start_up_make_the_supervisor_give_up(database_url: str) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-procs-fail-"))
    (data_dir / "blobs").write_text("not a directory")  # only the children touch blobs/
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
    env.update({"DATABASE_URL": database_url, "MAILSAC_DATA_DIR": str(data_dir),
                "MAILSAC_SMTP_PORT": "0", "MAILSAC_HTTP_PORT": "0", "MAILSAC_POP3_PORT": "0",
                "MAILSAC_READY_FILE": str(data_dir / "ready.json"),
                "MAILSAC_ADMIN_KEY": ADMIN_KEY, **GENEROUS})
    try:
        done = subprocess.run([sys.executable, "-m", "mailsac", "serve"], env=env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 1, done.stderr[-4000:]
        assert "giving up" in done.stderr
        assert done.stderr.count("restarting it in") >= 4  # retried with backoff first
        assert not (data_dir / "ready.json").exists()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
