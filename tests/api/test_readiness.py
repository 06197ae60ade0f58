"""GET /readyz and the drain on SIGTERM (MAILSAC_DRAIN_SECONDS): the node turns unready
first, keeps serving (SMTP still accepts mail) for the drain period, then stops cleanly."""

from __future__ import annotations

import shutil
import signal
import smtplib
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.helpers import (
    ServerHandle,
    client,
    make_message,
    start_private_server,
    stop_server,
    unique_inbox,
)

# Long enough that the checks below fit inside it on a loaded machine; the test never
# waits for it to run out on its own except at the end.
DRAIN = 10.0


def _wait_unready(http: httpx.Client, proc_alive: Callable[[], bool]) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = http.get("/readyz")
        if response.status_code != 200:
            return response
        assert proc_alive()
        time.sleep(0.02)
    raise AssertionError("/readyz never turned unready after SIGTERM")


@pytest.fixture()
def node(database_url: str) -> Iterator[ServerHandle]:
    handle = start_private_server(database_url, {"MAILSAC_DRAIN_SECONDS": str(DRAIN)},
                                  prefix="mailsac-test-drain-")
    yield handle
    if handle.proc.poll() is None:
        stop_server(handle)
    shutil.rmtree(handle.data_dir, ignore_errors=True)


def test_ready_is_200(server: ServerHandle) -> None:
    with client(server, None) as anon:
        response = anon.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}


def test_sigterm_drains_then_exits_cleanly(node: ServerHandle) -> None:
    inbox = unique_inbox()
    with client(node, None) as anon:
        assert anon.get("/readyz").status_code == 200
        node.proc.send_signal(signal.SIGTERM)
        unready = _wait_unready(anon, lambda: node.proc.poll() is None)
        assert unready.status_code == 503
        body = unready.json()
        assert body["error"] == "Service Unavailable" and "draining" in body["message"]
        # still serving while draining: a new SMTP connection delivers, the API answers
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30) as smtp:
            assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}
        assert node.proc.poll() is None, "the node stopped before its drain period ended"
        with client(node, node.key) as api:
            assert len(api.get(f"/api/addresses/{inbox}/messages").json()) == 1
            assert api.get("/healthz").status_code == 200  # health is not readiness
    assert node.proc.wait(60) == 0
    log = node.log()
    assert "draining: unready for 10 s" in log and "mailsac stopped" in log


def test_second_sigterm_cuts_the_drain_short(database_url: str) -> None:
    # A drain far longer than the wait below: only the second signal can end it in time.
    handle = start_private_server(database_url, {"MAILSAC_DRAIN_SECONDS": "600"},
                                  prefix="mailsac-test-drain-")
    try:
        with client(handle, None) as anon:
            handle.proc.send_signal(signal.SIGTERM)
            assert _wait_unready(anon, lambda: handle.proc.poll() is None).status_code == 503
        handle.proc.send_signal(signal.SIGTERM)
        assert handle.proc.wait(120) == 0
    finally:
        if handle.proc.poll() is None:
            handle.proc.kill()
            handle.proc.wait(10)
        shutil.rmtree(handle.data_dir, ignore_errors=True)
