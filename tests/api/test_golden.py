"""Golden files: real-world-shaped messages sent over SMTP, their API JSON compared to disk.

Volatile values (ids, timestamps, the per-test inbox) are masked. To refresh after an
intended change: ``UPDATE_GOLDEN=1 python -m pytest tests/api/test_golden.py`` and review
the diff of ``tests/data/golden/``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from tests.helpers import DATA, ServerHandle, send_raw, unique_inbox

FIXTURES = sorted(p.stem for p in (DATA / "messages").glob("*.eml"))
GOLDEN = DATA / "golden"


def _masked(value: Any, inbox: str) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, inbox) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, inbox) for v in value]
    if isinstance(value, str):
        return value.replace(inbox, "{inbox}")
    return value


def snapshot(api: httpx.Client, inbox: str, raw: bytes) -> dict[str, Any]:
    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    mid = message["_id"]
    stored = api.get(f"/api/raw/{inbox}/{mid}").content
    assert stored.endswith(raw)  # byte-exact after our Received header
    assert message["size"] == len(stored)
    assert isinstance(message["spam"], float) and 0.0 <= message["spam"] <= 1.0
    message.update(_id="{id}", received="{received}", size="{size}", spam="{spam}")
    return _masked({
        "message": message,
        "attachments": api.get(f"/api/addresses/{inbox}/messages/{mid}/attachments").json(),
        "text": api.get(f"/api/text/{inbox}/{mid}").text,
        "body": api.get(f"/api/body/{inbox}/{mid}").text,
        "headers": api.get(f"/api/addresses/{inbox}/messages/{mid}/headers",
                            params={"format": "json-ordered"}).json()[1:],  # skip Received
    }, inbox)


@pytest.mark.parametrize("name", FIXTURES)
def test_message_json_matches_golden(server: ServerHandle, api: httpx.Client, name: str) -> None:
    raw = (DATA / "messages" / f"{name}.eml").read_bytes()
    inbox = unique_inbox()
    assert send_raw(server, raw, [inbox]) == {}
    got = snapshot(api, inbox, raw)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
        if not os.environ.get("UPDATE_GOLDEN"):
            pytest.fail(f"golden file {path.name} was missing and has been written; re-run")
    assert got == json.loads(path.read_text())


def test_every_fixture_has_a_golden_file() -> None:
    assert FIXTURES, "no .eml fixtures found"
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == FIXTURES
