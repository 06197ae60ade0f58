"""GET /api/addresses/{email}/messages/{id}/extract against the real server: mail sent
with smtplib, read with httpx; stored at intake, computed on demand for older mail,
deleted with its message, and visible exactly like the message."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from mailsac.storage.db import create_engine
from tests.helpers import ServerHandle, client, deliver, new_account, unique_inbox

OTP_HTML = (
    '<p>Hi Sam,</p><p>Your verification code is:</p>'
    '<div style="font-size:32px;background:#fdf2e9;color:#d35400">482913</div>'
    '<p>Or confirm with one click:</p>'
    '<a href="https://acme.example/confirm?token=Zx81&amp;u=7" '
    'style="background:#d35400;color:#fff;padding:12px">Confirm your e-mail</a>'
    '<p>Acme Inc., 548 Market St, San Francisco, CA 94104 · '
    '<a href="https://mail.acme.example/unsubscribe/9">Unsubscribe</a></p>'
)
OTP_TEXT = ("Hi Sam,\n\nYour verification code is:\n\n    482913\n\nOr confirm with one click:\n"
            "https://acme.example/confirm?token=Zx81&u=7\n\nAcme Inc., 548 Market St, "
            "San Francisco, CA 94104\nCall +1 (415) 555-0132\n")


def _send_otp(server: ServerHandle, api: httpx.Client, inbox: str) -> str:
    deliver(server, inbox, subject="Your Acme verification code", body=OTP_TEXT, html=OTP_HTML)
    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    return str(message["_id"])


def _sql(database_url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_codes_links_and_action_link(server: ServerHandle, api: httpx.Client,
                                     inbox: str, database_url: str) -> None:
    message_id = _send_otp(server, api, inbox)
    response = api.get(f"/api/addresses/{inbox}/messages/{message_id}/extract")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert set(data) == {"_id", "codes", "links", "actionLink"}
    assert data["_id"] == message_id
    assert [c["value"] for c in data["codes"]] == ["482913"]
    code = data["codes"][0]
    assert code["source"] == "text" and "482913" in code["context"]
    assert 0.5 <= code["confidence"] <= 1.0
    kinds = {link["url"]: link["kind"] for link in data["links"]}
    assert kinds == {"https://acme.example/confirm?token=Zx81&u=7": "confirm",
                     "https://mail.acme.example/unsubscribe/9": "unsubscribe"}
    assert data["links"][0]["text"] == "Confirm your e-mail"
    assert data["links"][0]["source"] == "html"
    assert data["actionLink"] == data["links"][0]
    # Stored at intake, in its own table (not in the message rows lists read).
    (stored,) = _sql(database_url, "SELECT data FROM message_extracts WHERE message_id = :id",
                     id=message_id)
    assert stored[0]["codes"][0]["value"] == "482913"
    # The Mailsac message object is unchanged.
    message = api.get(f"/api/addresses/{inbox}/messages/{message_id}").json()
    assert "codes" not in message and "actionLink" not in message


def test_mail_without_codes_or_links(server: ServerHandle, api: httpx.Client,
                                     inbox: str) -> None:
    deliver(server, inbox, subject="Receipt", body="Order 48291375, total $129.99, "
            "delivered 2024-06-04 at 10:30. Questions? Call 0800 123 4567.")
    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    data = api.get(f"/api/addresses/{inbox}/messages/{message['_id']}/extract").json()
    assert data == {"_id": message["_id"], "codes": [], "links": [], "actionLink": None}


def test_computed_on_demand_when_not_stored(server: ServerHandle, api: httpx.Client,
                                            inbox: str, database_url: str) -> None:
    message_id = _send_otp(server, api, inbox)
    path = f"/api/addresses/{inbox}/messages/{message_id}/extract"
    first = api.get(path).json()
    # As for mail stored before the migration: no row.
    _sql(database_url, "DELETE FROM message_extracts WHERE message_id = :id", id=message_id)
    again = api.get(path)
    assert again.status_code == 200
    assert again.json() == first
    rows = _sql(database_url, "SELECT count(*) FROM message_extracts WHERE message_id = :id",
                id=message_id)
    assert rows == [(1,)]  # stored again, once


def test_deleting_the_message_deletes_its_extract(server: ServerHandle, api: httpx.Client,
                                                  inbox: str, database_url: str) -> None:
    message_id = _send_otp(server, api, inbox)
    count = "SELECT count(*) FROM message_extracts WHERE message_id = :id"
    assert _sql(database_url, count, id=message_id) == [(1,)]
    assert api.delete(f"/api/addresses/{inbox}/messages/{message_id}").status_code == 200
    assert _sql(database_url, count, id=message_id) == [(0,)]
    gone = api.get(f"/api/addresses/{inbox}/messages/{message_id}/extract")
    assert gone.status_code == 404
    assert set(gone.json()) == {"message", "error"}


def test_unknown_message_and_missing_key(server: ServerHandle, api: httpx.Client,
                                         anon: httpx.Client, inbox: str) -> None:
    message_id = _send_otp(server, api, inbox)
    missing = api.get(f"/api/addresses/{inbox}/messages/nope-0/extract")
    assert missing.status_code == 404
    assert set(missing.json()) == {"message", "error"}
    assert anon.get(f"/api/addresses/{inbox}/messages/{message_id}/extract").status_code == 401


@pytest.mark.parametrize("caller", ["owner", "other"])
def test_private_mail_follows_get_message(server: ServerHandle, caller: str) -> None:
    _, owner_key = new_account(server, "xowner")
    _, other_key = new_account(server, "xother")
    inbox = unique_inbox()
    with client(server, owner_key) as owner:
        assert owner.post(f"/api/addresses/{inbox}").status_code == 200
        message_id = _send_otp(server, owner, inbox)
    with client(server, owner_key if caller == "owner" else other_key) as api:
        message = api.get(f"/api/addresses/{inbox}/messages/{message_id}")
        extract = api.get(f"/api/addresses/{inbox}/messages/{message_id}/extract")
        fake = api.get(f"/api/addresses/{inbox}/messages/nope-0/extract")
    assert extract.status_code == message.status_code == (200 if caller == "owner" else 401)
    if caller == "other":
        assert fake.status_code == 401  # whether or not the id exists
        assert "482913" not in extract.text
