"""The spam model across nodes and auto-learning: a lesson taught through one node moves
the scores of another (each follows ``spam_feedback``), and the optional auto-learning
learns confident scores within its hourly budget, as the capped pseudo-account.

Runs on a database of its own: operator lessons are uncapped and would leak into other
tests' scores through the shared session database."""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailsac.spam_autolearn import AUTO_ACCOUNT
from mailsac.storage.db import asyncpg_dsn
from tests.helpers import (
    ServerHandle,
    client,
    database_of_its_own,
    deliver,
    make_message,
    metric,
    start_server,
    stop_server,
    unique_inbox,
)

PATIENCE = 60.0


@pytest.fixture()
def private_db(database_url: str) -> str:
    return database_of_its_own(database_url, "mailsac_spam_nodes")


@pytest.fixture()
def nodes(private_db: str) -> Iterator[list[ServerHandle]]:
    started: list[ServerHandle] = []
    yield started
    for node in started:
        assert stop_server(node) == 0, node.log()
        shutil.rmtree(node.data_dir, ignore_errors=True)


def _node(nodes: list[ServerHandle], url: str, env: dict[str, str]) -> ServerHandle:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-spam-node-"))
    node = start_server(data_dir, {"DATABASE_URL": url, "MAILSAC_CLUSTER": "spam-nodes",
                                   "MAILSAC_SPAM_FOLLOW_INTERVAL": "0.3", **env})
    nodes.append(node)
    return node


def _operator_shift(node: ServerHandle, word: str) -> float:
    inbox = unique_inbox()
    deliver(node, inbox, subject=f"{word} notes", body=f"the {word} figures, {word} again")
    with client(node, node.key) as api:
        mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
        report: dict[str, Any] = api.get(f"/api/messages/{mid}/spam-report").json()
    return float(report["layers"]["operator"]["logitShift"])


def test_a_lesson_taught_through_one_node_reaches_the_others(
        nodes: list[ServerHandle], private_db: str) -> None:
    a = _node(nodes, private_db, {})
    b = _node(nodes, private_db, {})
    word = f"lw{uuid.uuid4().hex[:8]}"
    assert _operator_shift(b, word) == 0.0
    raws = [make_message(unique_inbox(), subject=f"{word} notes {i}",
                         body=f"the {word} figures, {word} again") for i in range(3)]
    with client(a, a.key) as api:
        taught = api.post("/api/admin/spam/learn", json={"messages": [
            {"raw": base64.b64encode(r).decode(), "label": "spam"} for r in raws]})
    assert taught.status_code == 200 and taught.json()["learned"] == 3
    deadline = time.monotonic() + PATIENCE
    while metric(b, "mailsac_spam_followed_updates_total") < 3:
        assert time.monotonic() < deadline, "node B never learned node A's lessons"
        time.sleep(0.1)
    assert _operator_shift(b, word) > 0.0
    assert metric(a, "mailsac_spam_followed_updates_total") == 0  # its own: not twice


def _stored_lessons(url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM spam_feedback WHERE account_id = $1", AUTO_ACCOUNT))
        finally:
            await conn.close()
    return asyncio.run(count())


def test_auto_learning_is_off_by_default_and_bounded_when_on(
        nodes: list[ServerHandle], private_db: str) -> None:
    plain = _node(nodes, private_db, {})
    for i in range(2):
        deliver(plain, unique_inbox(), subject=f"ordinary {i}")
    # Ordinary mail scores well under 0.49, so every message is a ham candidate here.
    auto = _node(nodes, private_db, {"MAILSAC_SPAM_AUTOLEARN": "true",
                                     "MAILSAC_SPAM_AUTOLEARN_HAM": "0.49",
                                     "MAILSAC_SPAM_AUTOLEARN_PER_HOUR": "2"})
    assert _stored_lessons(private_db) == 0  # the node without it learned nothing
    inbox = unique_inbox()
    for i in range(4):
        deliver(auto, inbox, subject=f"weekly notes {i}", body=f"minutes of meeting {i}")
    deadline = time.monotonic() + PATIENCE
    while metric(auto, "mailsac_spam_autolearn_total", '{outcome="learned"}') \
            + metric(auto, "mailsac_spam_autolearn_total", '{outcome="dropped"}') < 4:
        assert time.monotonic() < deadline, "the auto-learner never took the candidates"
        time.sleep(0.1)
    assert metric(auto, "mailsac_spam_autolearn_total", '{outcome="learned"}') == 2
    assert metric(auto, "mailsac_spam_autolearn_total", '{outcome="dropped"}') == 2
    assert _stored_lessons(private_db) == 2  # as the capped pseudo-account
    assert metric(plain, "mailsac_spam_autolearn_total", '{outcome="learned"}') == 0
