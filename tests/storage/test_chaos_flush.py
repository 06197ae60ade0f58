"""Chaos firing counts and events are written in batches (Chaos.flush): an API read that
comes while a batch is being written sees each firing once, never zero times."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailsac.chaos import store
from mailsac.chaos.rules import RuleSpec
from mailsac.chaos.service import Chaos
from mailsac.policy import parse_recipient
from mailsac.storage.db import create_engine
from tests.helpers import unique_inbox


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=3)
    yield eng
    await eng.dispose()


async def test_reads_during_a_flush_see_each_firing_once(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = unique_inbox("chaos-flush.test")
    chaos = Chaos(engine, owner_of_inbox=lambda i: "default" if i == inbox else None,
                  domain_owner=lambda d: None)
    spec = RuleSpec(stage="rcpt", action="reply", code=451, message="try later",
                    delay_seconds=None, probability=None, times=None, expires_in=60)
    rule = await chaos.create(spec, account_id="default", scope="address", target=inbox)
    assert await chaos.fire("rcpt", [parse_recipient(inbox)]) is not None

    writing, release = asyncio.Event(), asyncio.Event()
    insert_events = store.insert_events

    async def held_insert(conn: AsyncConnection, events: Sequence[store.Event]) -> None:
        writing.set()  # the batch has left the pending lists; its commit is held back
        await release.wait()
        await insert_events(conn, events)

    monkeypatch.setattr(store, "insert_events", held_insert)
    flush = asyncio.create_task(chaos.flush())
    await asyncio.wait_for(writing.wait(), 30)
    events = asyncio.create_task(chaos.events(inbox, "default"))
    rules = asyncio.create_task(chaos.rules("address", inbox, "default"))
    await asyncio.sleep(0.1)  # the reads are under way while the batch is in flight
    release.set()
    await flush
    assert [e.rule_id for e in await events] == [rule.id]
    assert [r.fired for r in await rules] == [1]
    # and once written, still exactly once
    assert [e.rule_id for e in await chaos.events(inbox, "default")] == [rule.id]
    assert [r.fired for r in await chaos.rules("address", inbox, "default")] == [1]
