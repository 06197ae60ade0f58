"""API keys: header or query parameter, 401 JSON otherwise, and the CLI that creates them."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers import ROOT, ServerHandle, deliver

PATHS = [
    "/api/addresses/{inbox}/messages",
    "/api/addresses/{inbox}/message-count",
    "/api/addresses/{inbox}/messages/{id}",
    "/api/addresses/{inbox}/messages/{id}/headers",
    "/api/addresses/{inbox}/messages/{id}/attachments",
    "/api/raw/{inbox}/{id}",
    "/api/dirty/{inbox}/{id}",
    "/api/body/{inbox}/{id}",
    "/api/text/{inbox}/{id}",
]


@pytest.fixture()
def message_id(server: ServerHandle, api: httpx.Client, inbox: str) -> str:
    deliver(server, inbox)
    return str(api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "no API key: send it in the Mailsac-Key header"),
        ({"Mailsac-Key": "k_wrongwrongwrongwrongwrongwr"}, "invalid API key"),
    ],
)
def test_missing_or_wrong_key_is_401(
    anon: httpx.Client, inbox: str, message_id: str, path: str,
    headers: dict[str, str], message: str,
) -> None:
    response = anon.get(path.format(inbox=inbox, id=message_id), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": message, "error": "Unauthorized"}


@pytest.mark.parametrize("method", ["DELETE"])
def test_deletes_need_a_key(anon: httpx.Client, inbox: str, message_id: str,
                            method: str) -> None:
    one = anon.request(method, f"/api/addresses/{inbox}/messages/{message_id}")
    purge = anon.request(method, f"/api/addresses/{inbox}/messages")
    assert one.status_code == 401 and purge.status_code == 401


def test_query_parameter_key_works(
    server: ServerHandle, anon: httpx.Client, inbox: str, message_id: str
) -> None:
    response = anon.get(f"/api/addresses/{inbox}/messages", params={"_mailsacKey": server.key})
    assert response.status_code == 200 and response.json()[0]["_id"] == message_id


def test_cli_creates_a_key_that_works_and_revoke_stops_it(
    server: ServerHandle, anon: httpx.Client, database_url: str, inbox: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSAC_")}
    env["DATABASE_URL"] = database_url
    created = subprocess.run(
        [sys.executable, "-m", "mailsac", "keys", "create", "--name", "ci-test"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    key = created.stdout.strip()
    assert key.startswith("k_") and len(key) == 28
    assert "shown only once" in created.stderr
    ok = anon.get(f"/api/addresses/{inbox}/message-count", headers={"Mailsac-Key": key})
    assert ok.status_code == 200
    listed = subprocess.run(
        [sys.executable, "-m", "mailsac", "keys", "list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    line = next(row for row in listed.splitlines() if "\tci-test\t" in row)
    assert key not in listed  # only a prefix is ever shown again
    key_id = line.split("\t")[0]
    subprocess.run([sys.executable, "-m", "mailsac", "keys", "revoke", key_id],
                   cwd=ROOT, env=env, capture_output=True, timeout=60, check=True)
    listed = subprocess.run(
        [sys.executable, "-m", "mailsac", "keys", "list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "revoked" in next(row for row in listed.splitlines() if row.startswith(key_id + "\t"))


def test_keys_are_stored_hashed(server: ServerHandle, database_url: str) -> None:
    import asyncio

    from sqlalchemy import text

    from mailsac.storage.db import create_engine

    async def stored_columns() -> list[tuple[object, ...]]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT key_hash, key_prefix FROM api_keys"))
                return [tuple(r) for r in rows]
        finally:
            await engine.dispose()

    rows = asyncio.run(stored_columns())
    assert rows
    for key_hash, prefix in rows:
        assert isinstance(key_hash, bytes) and len(key_hash) == 32
        assert server.key.encode() not in key_hash
        assert isinstance(prefix, str) and len(prefix) == 6
