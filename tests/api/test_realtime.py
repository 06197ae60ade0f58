"""Real-time delivery end to end: long-poll wait, WebSocket feed, webhooks, Slack,
forwarding and the catch-all notification rule — real sockets, real local receivers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
import websockets

from tests.helpers import (
    Receiver,
    ServerHandle,
    client,
    deliver,
    hub_subscribed,
    new_account,
    unique_inbox,
)


def _later(delay: float, action: object) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_returns_a_message_that_already_arrived(server: ServerHandle,
                                                     api: httpx.Client) -> None:
    inbox = unique_inbox()
    since = datetime.now(UTC).isoformat()
    deliver(server, inbox, subject="already here")
    got = api.get(f"/api/addresses/{inbox}/messages/wait",
                  params={"since": since, "timeout": 5})
    assert got.status_code == 200 and got.json()["subject"] == "already here"


def test_wait_holds_until_a_matching_message_arrives(server: ServerHandle,
                                                     api: httpx.Client) -> None:
    inbox = unique_inbox()
    since = datetime.now(UTC).isoformat()  # the wait may reach the server after the mail
    sender = _later(0.3, lambda: (deliver(server, inbox, subject="noise"),
                                  deliver(server, inbox, subject="Your code is 123456")))
    got = api.get(f"/api/addresses/{inbox}/messages/wait",
                  params={"timeout": 20, "subject": "your code", "since": since})
    sender.join()
    assert got.status_code == 200
    assert got.json()["subject"] == "Your code is 123456"
    by_sender = api.get(f"/api/addresses/{inbox}/messages/wait",
                        params={"timeout": 1, "from": "nobody@else.test",
                                "since": "2000-01-01T00:00:00Z"})
    assert by_sender.status_code == 204


def test_wait_times_out_with_204_and_rejects_bad_timeouts(api: httpx.Client) -> None:
    inbox = unique_inbox()
    started = time.monotonic()
    got = api.get(f"/api/addresses/{inbox}/messages/wait", params={"timeout": 0.5})
    assert got.status_code == 204 and got.content == b""
    assert time.monotonic() - started >= 0.5
    assert api.get(f"/api/addresses/{inbox}/messages/wait",
                   params={"timeout": 301}).status_code == 400


def test_a_thousand_concurrent_waiters(server: ServerHandle) -> None:
    target = unique_inbox()
    since = datetime.now(UTC).isoformat()

    async def scenario() -> list[int]:
        limits = httpx.Limits(max_connections=1100, max_keepalive_connections=1100)
        async with httpx.AsyncClient(base_url=server.http_url, limits=limits, timeout=60,
                                     headers={"Mailsac-Key": server.key}) as http:
            waits = [http.get(f"/api/addresses/{unique_inbox()}/messages/wait",
                              params={"timeout": 3}) for _ in range(999)]
            # `since` from before any request: the last one may reach the server after the
            # message on a slow machine, and must still see it.
            waits.append(http.get(f"/api/addresses/{target}/messages/wait",
                                  params={"timeout": 30, "since": since}))
            tasks = [asyncio.create_task(w) for w in waits]
            await hub_subscribed(server, len(waits), within=2.5)  # the others last 3 s
            health = await http.get("/healthz")  # the server still answers at once
            assert health.status_code == 200
            await asyncio.to_thread(deliver, server, target, subject="for the last waiter")
            responses = await asyncio.gather(*tasks)
            return [r.status_code for r in responses]

    codes = asyncio.run(scenario())
    assert codes[-1] == 200
    assert codes[:-1].count(204) == 999


@pytest.fixture()
def ws_address(server: ServerHandle) -> tuple[str, str]:
    _, key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"enablews": True}).status_code == 200
    return key, address


def _ws_url(server: ServerHandle, key: str, addresses: str) -> str:
    return (server.http_url.replace("http://", "ws://")
            + f"/incoming-messages?key={key}&addresses={quote(addresses, safe=',@*')}")


def test_websocket_pushes_new_mail(server: ServerHandle, ws_address: tuple[str, str]) -> None:
    key, address = ws_address

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        async with websockets.connect(_ws_url(server, key, address)) as ws:
            hello = json.loads(await ws.recv())
            await asyncio.to_thread(deliver, server, address, subject="pushed",
                                    html="<p>hi <a href='https://x.test/a'>a</a></p>")
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            return hello, frame

    hello, frame = asyncio.run(scenario())
    assert hello == {"status": 200, "msg": "Listening", "addresses": [address], "domains": []}
    assert frame["status"] == 200
    email = frame["email"]
    assert isinstance(email, dict)
    assert email["subject"] == "pushed" and email["inbox"] == address
    assert "hi" in email["html"] and email["text"].strip() == "Hi there"
    assert "Subject: pushed" in email["raw"]
    assert email["headers"]["subject"] == "pushed"
    assert email["links"] == ["https://x.test/a"]


@pytest.mark.parametrize(
    ("key_kind", "addresses", "status"),
    [("bad", "x@y.test", 401), ("good", "", 400), ("good", "not-reserved@y.test", 403),
     ("good", "unowned-domain.test", 403), ("good", "bad address@y.test", 400),
     ("good", "no-dot-domain", 400)],
)
def test_websocket_refusals(server: ServerHandle, ws_address: tuple[str, str], key_kind: str,
                            addresses: str, status: int) -> None:
    key = ws_address[0] if key_kind == "good" else "k_bogusbogusbogusbogusbogusbo"

    async def scenario() -> tuple[dict[str, object], int | None]:
        async with websockets.connect(_ws_url(server, key, addresses)) as ws:
            frame = json.loads(await ws.recv())
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return frame, closed.rcvd.code if closed.rcvd else None
            return frame, None

    frame, code = asyncio.run(scenario())
    assert frame["status"] == status and frame["msg"]
    assert code == 4000 + status


def test_websocket_requires_enablews(server: ServerHandle) -> None:
    _, key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        api.post(f"/api/addresses/{address}")

    async def scenario() -> dict[str, object]:
        async with websockets.connect(_ws_url(server, key, address)) as ws:
            return dict(json.loads(await ws.recv()))

    frame = asyncio.run(scenario())
    assert frame["status"] == 403 and "enablews" in str(frame["msg"])


def test_webhook_is_signed_and_retried_until_it_succeeds(server: ServerHandle) -> None:
    receiver = Receiver(fail_first=2)
    _, key = new_account(server)
    address = unique_inbox()
    try:
        with client(server, key) as api:
            reserved = api.post(f"/api/addresses/{address}",
                                json={"webhook": receiver.url + "/hook"}).json()
            secret = reserved["webhookSecret"]
            assert secret
            deliver(server, address, subject="hooked")
            requests = receiver.wait_for(3)
            assert len(requests) >= 3
            deliveries = api.get(f"/api/addresses/{address}/webhook-deliveries").json()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if deliveries and deliveries[0]["status"] == "delivered":
                    break
                time.sleep(0.05)
                deliveries = api.get(f"/api/addresses/{address}/webhook-deliveries").json()
        path, headers, body = requests[2]
        assert path == "/hook"
        payload = json.loads(body)
        assert payload["subject"] == "hooked" and payload["inbox"] == address
        assert "Subject: hooked" in payload["raw"] and payload["text"].strip() == "Hi there"
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Mailsac-Signature"] == expected
        assert [r[1]["X-Mailsac-Attempt"] for r in requests[:3]] == ["1", "2", "3"]
        assert len({r[1]["X-Mailsac-Delivery"] for r in requests[:3]}) == 1
        (delivery,) = deliveries
        assert delivery["status"] == "delivered" and delivery["attempts"] == 3
        assert delivery["lastStatusCode"] == 200 and delivery["kind"] == "webhook"
    finally:
        receiver.close()


def test_slack_post_and_forward_copy(server: ServerHandle) -> None:
    receiver = Receiver()
    _, key = new_account(server)
    address, target = unique_inbox(), unique_inbox()
    try:
        with client(server, key) as api:
            api.post(f"/api/addresses/{address}", json={
                "webhookSlack": receiver.url + "/slack", "webhookSlackToFrom": True,
                "forward": target})
            deliver(server, address, subject="to slack")
            (path, _, body), = receiver.wait_for(1)
            copy = api.get(f"/api/addresses/{target}/messages").json()
            raw = api.get(f"/api/raw/{target}/{copy[0]['_id']}").text
        assert path == "/slack"
        text = json.loads(body)["text"]
        assert "to slack" in text and "alice@example.org" in text and address in text
        assert "/inbox/" in text
        assert [m["subject"] for m in copy] == ["to slack"]
        assert f"X-Mailsac-Forwarded-From: {address}" in raw
        assert copy[0]["via"] == f"forwarded via {address}"
    finally:
        receiver.close()


def test_catch_all_and_reserved_both_notified_but_stored_once(server: ServerHandle) -> None:
    receiver = Receiver()
    account, key = new_account(server)
    domain = f"notify-{uuid.uuid4().hex[:8]}.test"
    try:
        with client(server, server.key) as admin:
            assert admin.post("/api/admin/domains", json={
                "domain": domain, "account": account, "catchAll": True}).status_code == 200
        with client(server, key) as api:
            api.put(f"/api/addresses/*@{domain}",
                    json={"webhook": receiver.url + "/catch", "enablews": True})
            api.post(f"/api/addresses/vip@{domain}", json={"webhook": receiver.url + "/vip"})

            async def scenario() -> dict[str, object]:
                async with websockets.connect(_ws_url(server, key, f"*@{domain}")) as ws:
                    await ws.recv()
                    await asyncio.to_thread(deliver, server, f"vip@{domain}", subject="vip")
                    return dict(json.loads(await asyncio.wait_for(ws.recv(), 20)))

            frame = asyncio.run(scenario())
            paths = sorted(r[0] for r in receiver.wait_for(2))
            assert paths == ["/catch", "/vip"]
            assert frame["status"] == 200
            assert api.get(f"/api/addresses/*@{domain}/messages").json() == []
            assert len(api.get(f"/api/addresses/vip@{domain}/messages").json()) == 1
    finally:
        receiver.close()
