"""The chaos purge runs on one node at a time (a cluster job lock) and deletes expired
rules; a node that finds another one purging skips its turn."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.chaos import store
from mailsac.chaos.rules import RuleSpec
from mailsac.chaos.service import Chaos
from mailsac.chaos.store import chaos_rules
from mailsac.storage.db import create_engine
from mailsac.storage.joblock import CHAOS_PURGE, exclusive
from tests.helpers import unique_inbox


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=3)
    yield eng
    await eng.dispose()


async def _expired_rule(engine: AsyncEngine) -> str:
    spec = RuleSpec(stage="rcpt", action="reply", code=451, message="try later",
                    delay_seconds=None, probability=None, times=1, expires_in=60)
    async with engine.begin() as conn:
        rule = await store.insert_rule(conn, spec, account_id="default", scope="address",
                                       target=unique_inbox("chaos-purge.test"))
        await conn.execute(update(chaos_rules).where(chaos_rules.c.id == rule.id)
                           .values(expires_at=text("now() - interval '1 minute'")))
    return rule.id


async def _exists(engine: AsyncEngine, rule_id: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(select(chaos_rules.c.id).where(chaos_rules.c.id == rule_id))
    return found is not None


async def test_purge_skips_while_another_node_holds_the_lock_then_deletes(
        engine: AsyncEngine) -> None:
    chaos = Chaos(engine, owner_of_inbox=lambda inbox: None, domain_owner=lambda d: None)
    rule_id = await _expired_rule(engine)
    async with exclusive(engine, CHAOS_PURGE) as held:  # "another node" purging now
        assert held
        await chaos.purge()
        assert await _exists(engine, rule_id), "purged although another node held the lock"
    await chaos.purge()
    assert not await _exists(engine, rule_id)
