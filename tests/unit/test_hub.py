from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from mailsac.events import MessageDeleted, MessageStored
from mailsac.forwarding.hub import MessageHub, SubscriptionClosed
from mailsac.storage import MessageRecord


def _record(inbox: str) -> MessageRecord:
    return MessageRecord(
        id="m-0", inbox=inbox, original_inbox=inbox, domain=inbox.split("@")[1],
        received=datetime.now(UTC), size=1, blob_key="k" * 32, subject="", from_addrs=[],
        to_addrs=[], cc_addrs=[], bcc_addrs=[], attachments=None, links=[], ip="", via="",
        mail_from="", message_id=None, folder="inbox", labels=[], read=False, rtls=False,
        saved_by=None, spam=None, account_id=None)


async def test_routing_by_inbox_domain_and_everything() -> None:
    hub = MessageHub()
    by_inbox = hub.subscribe(["a@x.test"])
    by_domain = hub.subscribe(domains=["x.test"])
    everything = hub.subscribe(everything=True)
    other = hub.subscribe(["b@y.test"])
    event = MessageStored(_record("a@x.test"), ("a@x.test",))
    hub.publish(event)
    for sub in (by_inbox, by_domain, everything):
        assert await asyncio.wait_for(sub.get(), 1) is event
    assert other.queue.empty()
    hub.publish(MessageDeleted("m-0", "b@y.test"))
    assert isinstance(await asyncio.wait_for(other.get(), 1), MessageDeleted)
    for sub in (by_inbox, by_domain, everything, other):
        hub.unsubscribe(sub)
    assert hub.subscriber_count == 0


async def test_a_full_subscriber_is_dropped_not_waited_for() -> None:
    hub = MessageHub()
    slow = hub.subscribe(["a@x.test"], maxsize=2)
    fast = hub.subscribe(["a@x.test"], maxsize=100)
    for _ in range(5):
        hub.publish(MessageStored(_record("a@x.test"), ("a@x.test",)))  # never blocks
    assert hub.dropped == 1
    with pytest.raises(SubscriptionClosed, match="too slow"):
        await asyncio.wait_for(slow.get(), 1)
    assert fast.queue.qsize() == 5
    assert hub.subscriber_count == 1
