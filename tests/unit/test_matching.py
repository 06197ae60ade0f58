"""mailsac.matching: criteria, scopes, the hub's account index and the shared body search."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mailsac.errors import InvalidRequest
from mailsac.events import MessageStored
from mailsac.forwarding.hub import MessageHub
from mailsac.matching import INLINE_SCAN_CHARS, BodyMatcher, Criteria, Scope
from mailsac.storage import MessageRecord


def _record(inbox: str = "a@x.test", account: str | None = None, **fields: object
            ) -> MessageRecord:
    record = MessageRecord(
        id="m-0", inbox=inbox, original_inbox=inbox, domain=inbox.split("@")[1],
        received=datetime.now(UTC), size=1, blob_key="k" * 32, subject="Your Code",
        from_addrs=[{"name": "Shop Security", "address": "sec@shop.test"}],
        to_addrs=[{"name": "Team", "address": "team@corp.test"}], cc_addrs=[], bcc_addrs=[],
        attachments=None, links=[], ip="", via="", mail_from="", message_id=None,
        folder="inbox", labels=[], read=False, rtls=False, saved_by=None, spam=None,
        account_id=account)
    return replace(record, **fields)  # type: ignore[arg-type]


def test_metadata_criteria_are_case_insensitive_substrings() -> None:
    record = _record()
    assert Criteria.of(subject="your CODE").cheap_match(record)
    assert Criteria.of(sender="SHOP sec").cheap_match(record)
    assert Criteria.of(sender="@shop.test").cheap_match(record)
    assert Criteria.of(to="TEAM@").cheap_match(record)
    assert Criteria.of(to="a@x").cheap_match(record)  # the inbox itself
    # Name and address are separate fields: a term never spans them (as in their SQL form).
    assert not Criteria.of(sender="security sec@").cheap_match(record)
    assert not Criteria.of(subject="code", sender="nobody").cheap_match(record)
    assert Criteria.of(subject="", contains="").cheap_match(record)  # empty means any
    assert Criteria.of(contains="x").contains == "x"
    with pytest.raises(InvalidRequest, match="contains is limited"):
        Criteria.of(contains="x" * 257)


def test_scopes_hold_only_what_the_account_may_see() -> None:
    mine, theirs = "acct-1", "acct-2"
    inbox = Scope("inbox", "a@x.test", mine)
    assert inbox.holds(_record())  # public mail
    assert not inbox.holds(_record(account=theirs))
    assert not inbox.holds(_record(saved_by=theirs))  # starred by someone else
    assert not inbox.holds(_record("b@x.test"))
    domain = Scope("domain", "x.test", mine)
    assert domain.holds(_record(account=mine))
    assert not domain.holds(_record(account=theirs)) and not domain.holds(_record())
    assert not domain.holds(_record("a@y.test", account=mine))
    account = Scope("account", mine, mine)
    assert account.holds(_record("z@any.test", account=mine))
    assert not account.holds(_record()) and not account.holds(_record(account=theirs))


async def test_the_hub_routes_by_owning_account() -> None:
    hub = MessageHub()
    mine = Scope("account", "acct-1", "acct-1").subscribe(hub, 10)
    theirs = Scope("account", "acct-2", "acct-2").subscribe(hub, 10)
    assert hub.wants(["nobody@x.test"], "x.test", "acct-1")
    assert not hub.wants(["nobody@x.test"], "x.test", "acct-3")
    assert sorted(hub.watched_accounts()) == ["acct-1", "acct-2"]
    event = MessageStored(_record(account="acct-1"), ("a@x.test",))
    hub.publish(event)
    hub.publish(MessageStored(_record(), ("a@x.test",)))  # public: nobody's account
    assert await asyncio.wait_for(mine.get(), 1) is event
    assert mine.queue.empty() and theirs.queue.empty()
    hub.unsubscribe(mine)
    hub.unsubscribe(theirs)
    assert hub.subscriber_count == 0 and hub.watched_accounts() == []


async def test_a_ready_small_haystack_is_searched_inline() -> None:
    asked = 0

    async def haystack(record: MessageRecord) -> str:
        nonlocal asked
        asked += 1
        return "the needle"

    matcher = BodyMatcher(haystack, peek=lambda record: "the needle")
    assert await matcher.contains(_record(), "needle")
    assert not await matcher.contains(_record(), "absent")
    assert asked == 0 and matcher.searches == 2
    unready = BodyMatcher(haystack)  # nothing ready: it asks for the haystack
    assert await unready.contains(_record(), "needle") and asked == 1


async def test_many_askers_of_one_term_in_a_large_body_share_one_search() -> None:
    big = "x" * (INLINE_SCAN_CHARS * 2) + "needle"

    async def haystack(record: MessageRecord) -> str:
        return big

    matcher = BodyMatcher(haystack)
    record = _record()
    answers = await asyncio.gather(*(matcher.contains(record, "needle") for _ in range(500)))
    assert answers == [True] * 500 and matcher.searches == 1
    assert not await matcher.contains(record, "absent")
    assert await matcher.contains(record, "needle")  # remembered
    assert matcher.searches == 2


async def test_one_asker_going_away_does_not_cancel_the_others() -> None:
    big = "y" * (INLINE_SCAN_CHARS * 40) + "needle"

    async def haystack(record: MessageRecord) -> str:
        return big

    matcher = BodyMatcher(haystack)
    first = asyncio.create_task(matcher.contains(_record(), "needle"))
    second = asyncio.create_task(matcher.contains(_record(), "needle"))
    for _ in range(3):
        await asyncio.sleep(0)  # both are now waiting for the one search
    first.cancel()
    assert await second and matcher.searches == 1
    with pytest.raises(asyncio.CancelledError):
        await first
