"""The client's sans-IO wait flow driven step by step (pure logic: no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mailsac.client import WaitTimeout
from mailsac.client.ops import (
    EPOCH,
    MAX_SERVER_WAIT,
    Criteria,
    WaitTarget,
    expect_since,
    wait,
)

MESSAGE = {"_id": "m1", "inbox": "a@example.test", "subject": "Hi",
           "from": [{"name": "", "address": "x@example.org"}], "to": [],
           "received": "2025-01-01T00:00:00.000Z"}


def _answer(status: int, body: object = None, headers: dict[str, str] | None = None
            ) -> httpx.Response:
    request = httpx.Request("GET", "http://mailsac.test/")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_long_waits_are_split_with_one_since() -> None:
    flow = wait(WaitTarget.inbox("a@example.test"), Criteria(subject="Hi", from_="x"),
                since="2025-01-01T00:00:00.000Z", timeout=1000)
    first = next(flow)
    assert first.path == "/api/addresses/a@example.test/messages/wait"
    assert first.params is not None and float(first.params["timeout"]) == MAX_SERVER_WAIT
    assert first.params["subject"] == "Hi" and first.params["from"] == "x"
    assert "count" not in first.params and first.timeout and first.timeout > MAX_SERVER_WAIT
    second = flow.send(_answer(204))  # the server held 300 s: ask again, same since
    assert second.params is not None
    assert second.params["since"] == first.params["since"] == "2025-01-01T00:00:00.000Z"
    with pytest.raises(StopIteration) as done:
        flow.send(_answer(200, MESSAGE))
    assert done.value.value == [MESSAGE]


def test_count_waits_unwrap_messages_and_default_since_is_the_epoch() -> None:
    flow = wait(WaitTarget.account(), Criteria(), since=None, timeout=5, count=2)
    call = next(flow)
    assert call.path == "/api/messages/wait"
    assert call.params is not None
    assert call.params["since"] == EPOCH and call.params["count"] == "2"
    with pytest.raises(StopIteration) as done:
        flow.send(_answer(200, {"messages": [MESSAGE, MESSAGE]}))
    assert done.value.value == [MESSAGE, MESSAGE]


def test_timeout_reports_matched_count_and_listing_failure() -> None:
    flow = wait(WaitTarget.domain("d.test"), Criteria(to="bob"), since=None, timeout=0,
                count=3)
    next(flow)
    listing = flow.send(_answer(204, headers={"X-Mailsac-Matched": "1"}))
    assert listing.path == "/api/domains/d.test/messages" and listing.ok is None
    with pytest.raises(WaitTimeout) as timed_out:
        flow.send(_answer(503, {"message": "down", "error": "Service Unavailable"}))
    assert timed_out.value.matched == 1
    assert "only 1 of 3 messages matching to contains 'bob' arrived in domain d.test" \
        in str(timed_out.value)
    assert "could not list domain d.test: HTTP 503" in str(timed_out.value)


def test_expect_starts_at_the_servers_clock_not_this_machines() -> None:
    # The server's clock is an hour behind ours: mail it stores during the next hour
    # would all be "before" a since taken from our clock.
    flow = expect_since(WaitTarget.inbox("a@example.test"))
    probe = next(flow)
    assert probe.path == "/api/addresses/a@example.test/messages/wait"
    assert probe.params == {"since": "9999-01-01T00:00:00.000Z", "timeout": "0"}
    with pytest.raises(StopIteration) as done:
        flow.send(_answer(204, headers={"X-Mailsac-Waited-Until": "2025-01-01T10:00:00.123Z"}))
    assert done.value.value == datetime(2025, 1, 1, 10, 0, 0, 124000, tzinfo=UTC)


def test_expect_falls_back_to_this_machines_clock_without_the_header() -> None:
    flow = expect_since(WaitTarget.account())
    next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(_answer(404, {"message": "Not Found", "error": "Not Found"}))
    assert abs(done.value.value - datetime.now(UTC)) < timedelta(minutes=1)
