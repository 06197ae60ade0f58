"""Operator teaching and the spam report through the real API, the ``spam learn`` CLI
against the service's database, and that the operator layer survives a restart.

Runs on a private server and database: operator teaching is uncapped and would leak into
other tests' scores through the shared database otherwise."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ROOT,
    ServerHandle,
    client,
    database_of_its_own,
    deliver,
    make_message,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)


def _body(word: str) -> str:
    return (f"Hi, the {word} notes from today are below. The {word} review moved to "
            f"Thursday; bring the {word} figures. Thanks, Sam")


def _latest(server: ServerHandle, key: str, inbox: str) -> dict[str, Any]:
    with client(server, key) as api:
        mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
        report = api.get(f"/api/messages/{mid}/spam-report")
    assert report.status_code == 200, report.text
    body: dict[str, Any] = report.json()
    return body


def _deliver_report(server: ServerHandle, key: str, word: str) -> dict[str, Any]:
    inbox = unique_inbox()
    deliver(server, inbox, subject=f"{word} notes", body=_body(word))
    return _latest(server, key, inbox)


@pytest.fixture(scope="module")
def private(database_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    url = database_of_its_own(database_url, "mailsac_spam_teach")
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-teach-"))
    yield data_dir, {"DATABASE_URL": url}
    shutil.rmtree(data_dir, ignore_errors=True)


def test_operator_and_tenant_teaching_and_restart(
    private: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    data_dir, env = private
    tenant_word, op_word, api_word, cli_word, control = (
        f"{p}{uuid.uuid4().hex[:8]}" for p in ("tw", "ow", "aw", "cw", "nw"))
    handle = start_server(data_dir, env)
    try:
        _, key = new_account(handle)
        # a tenant correcting its own mail: a capped community update
        first = _deliver_report(handle, key, tenant_word)
        assert first["layers"]["operator"]["logitShift"] == 0.0
        assert first["forSpam"] or first["againstSpam"]
        with client(handle, key) as api:
            assert api.post(f"/api/messages/{first['_id']}/spam").status_code == 200
        again = _deliver_report(handle, key, tenant_word)
        shift = again["layers"]["community"]["logitShift"]
        assert 0.0 < shift <= again["layers"]["community"]["maxShift"] == 1.0
        assert again["spam"] > first["spam"]
        # the operator's key (admin key of the operator account) reaches the trusted layer
        before = _deliver_report(handle, handle.key, op_word)
        with client(handle, handle.key) as api:
            assert api.post(f"/api/messages/{before['_id']}/spam").status_code == 200
        after = _deliver_report(handle, handle.key, op_word)
        assert after["layers"]["operator"]["logitShift"] > 0.0
        assert after["spam"] > before["spam"]
        assert after["discriminators"] > before["discriminators"]  # its words now count
        # bulk teaching through the admin API (operator only, bounded batches)
        raws = [make_message(unique_inbox(), subject=f"{api_word} notes {i}",
                             body=_body(api_word)) for i in range(3)]
        batch = {"messages": [{"raw": base64.b64encode(r).decode(), "label": "spam"}
                              for r in raws]}
        with client(handle, key) as api:
            assert api.post("/api/admin/spam/learn", json=batch).status_code in (401, 403)
        with client(handle, handle.key) as api:
            done = api.post("/api/admin/spam/learn", json=batch)
            assert done.status_code == 200 and done.json() == {"learned": 3, "alreadyKnown": 0}
            repeat = api.post("/api/admin/spam/learn", json=batch).json()
            assert repeat == {"learned": 0, "alreadyKnown": 3}
            bad = api.post("/api/admin/spam/learn",
                           json={"messages": [{"raw": "%%%", "label": "spam"}]})
            assert bad.status_code == 400 and "base64" in bad.json()["message"]
            assert api.post("/api/admin/spam/learn", json={"messages": []}).status_code == 400
        taught = _deliver_report(handle, key, api_word)
        assert taught["layers"]["operator"]["logitShift"] > 0.0
        # the report follows the message's visibility
        owner, owner_key = new_account(handle)
        _, other_key = new_account(handle)
        private_inbox = unique_inbox()
        with client(handle, owner_key) as api:
            assert api.post(f"/api/addresses/{private_inbox}").status_code == 200
        deliver(handle, private_inbox)
        mine = _latest(handle, owner_key, private_inbox)
        with client(handle, other_key) as other:
            denied = other.get(f"/api/messages/{mine['_id']}/spam-report")
            assert denied.status_code in (401, 403, 404)
            read = other.get(f"/api/addresses/{private_inbox}/messages/{mine['_id']}")
            assert read.status_code == denied.status_code  # same rule as reading it
            assert other.get("/api/messages/nosuch-0/spam-report").status_code == 404
    finally:
        assert stop_server(handle) == 0
    # bulk teaching from a directory of raw messages, against the database (server down)
    store = tmp_path / "store"
    store.mkdir()
    for i in range(3):
        (store / f"{i}.eml").write_bytes(
            make_message(unique_inbox(), subject=f"{cli_word} notes {i}", body=_body(cli_word)))
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
    cli_env.update({"DATABASE_URL": env["DATABASE_URL"], "MAILSAC_DATA_DIR": str(data_dir)})
    done = subprocess.run(
        [sys.executable, "-m", "mailsac", "spam", "learn", "--corpus", str(store),
         "--label", "spam"], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "learned 3 spam and 0 ham" in done.stdout
    handle = start_server(data_dir, env)
    try:
        _, key = new_account(handle)
        untaught = _deliver_report(handle, key, control)
        for word in (op_word, api_word, cli_word):  # all survived the restart
            report = _deliver_report(handle, key, word)
            assert report["layers"]["operator"]["logitShift"] > 0.0, word
            if word != op_word:  # taught in 3 messages: a discriminator (min_count 2)
                assert report["spam"] > untaught["spam"], word
        assert "replayed" in handle.log()
    finally:
        assert stop_server(handle) == 0


def test_operator_already_taught_lookup_uses_its_index(
    private: tuple[Path, dict[str, str]]
) -> None:
    """Migration 0011: the lookup SpamFeedback._taught runs before every operator teaching
    is an index probe (partial index over the operator's rows), not a table scan."""
    import asyncio

    import asyncpg

    from mailsac.storage.db import asyncpg_dsn

    async def plan() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(private[1]["DATABASE_URL"]))
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")  # tiny table otherwise
                rows = await conn.fetch(
                    "EXPLAIN SELECT id FROM spam_feedback WHERE account_id IS NULL "
                    "AND message_id = $1 AND is_spam IS true LIMIT 1", "sha256:x")
        finally:
            await conn.close()
        return "\n".join(r[0] for r in rows)

    text = asyncio.run(plan())
    assert "ix_spam_feedback_operator_taught" in text, text
