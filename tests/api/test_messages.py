"""Inbox and message endpoints against the real server (HTTP via httpx, mail via smtplib)."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from tests.helpers import ServerHandle, deliver, unique_inbox

MESSAGE_KEYS = {
    "_id", "from", "to", "cc", "bcc", "subject", "savedBy", "originalInbox", "inbox",
    "domain", "received", "size", "attachments", "ip", "via", "folder", "labels", "read",
    "rtls", "links", "spam",
}


def test_list_is_newest_first_with_mailsac_shape(
    server: ServerHandle, api: httpx.Client, inbox: str
) -> None:
    for n in range(3):
        deliver(server, inbox, subject=f"m{n}")
    listed = api.get(f"/api/addresses/{inbox}/messages")
    assert listed.status_code == 200
    messages = listed.json()
    assert [m["subject"] for m in messages] == ["m2", "m1", "m0"]
    first = messages[0]
    assert set(first) == MESSAGE_KEYS
    assert first["inbox"] == inbox and first["originalInbox"] == inbox
    assert first["domain"] == "example.test"
    assert first["from"] == [{"name": "Alice", "address": "alice@example.org"}]
    assert first["to"] == [{"name": "", "address": inbox}]
    assert first["folder"] == "inbox" and first["labels"] == [] and first["read"] is False
    assert first["ip"] == "127.0.0.1" and first["via"] == "127.0.0.1"
    assert first["rtls"] is False and first["savedBy"] is None
    assert isinstance(first["spam"], float) and 0.0 <= first["spam"] <= 1.0
    assert first["attachments"] is None
    assert first["received"].endswith("Z") and len(first["received"]) == 24
    datetime.fromisoformat(first["received"])
    assert first["size"] > 100


def test_count_and_limit_and_until_pagination(
    server: ServerHandle, api: httpx.Client, inbox: str
) -> None:
    for n in range(5):
        deliver(server, inbox, subject=f"p{n}")
    count = api.get(f"/api/addresses/{inbox}/message-count").json()
    assert count == {"count": 5, "inbox": inbox}
    page = api.get(f"/api/addresses/{inbox}/messages", params={"limit": 2}).json()
    assert [m["subject"] for m in page] == ["p4", "p3"]
    seen = [m["subject"] for m in page]
    while page:
        page = api.get(f"/api/addresses/{inbox}/messages",
                       params={"limit": 2, "until": page[-1]["received"]}).json()
        seen += [m["subject"] for m in page]
    # Messages in the same millisecond may share a timestamp; nothing newer reappears.
    assert seen[:2] == ["p4", "p3"]
    assert set(seen) <= {f"p{n}" for n in range(5)}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": "1001"}, "limit must be between 1 and 1000"),
        ({"limit": "ten"}, "limit must be an integer"),
        ({"until": "yesterday"}, "until must be an ISO 8601 date"),
    ],
)
def test_bad_query_parameters_are_400(
    api: httpx.Client, inbox: str, params: dict[str, str], message: str
) -> None:
    response = api.get(f"/api/addresses/{inbox}/messages", params=params)
    assert response.status_code == 400
    assert response.json() == {"message": message, "error": "Bad Request"}


def test_invalid_address_in_path_is_400(api: httpx.Client) -> None:
    response = api.get("/api/addresses/not-an-address/messages")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request" and "Invalid email address" in body["message"]


def test_plus_tag_and_case_share_one_inbox(server: ServerHandle, api: httpx.Client) -> None:
    inbox = unique_inbox()
    local, domain = inbox.split("@")
    deliver(server, f"{local.upper()}+Promo@{domain.upper()}", subject="tagged")
    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    assert message["inbox"] == inbox
    assert message["originalInbox"] == f"{local}+promo@{domain}"
    # The API normalises the path the same way.
    assert api.get(f"/api/addresses/{local}+other@{domain}/message-count").json()["count"] == 1


def test_get_and_delete_one_message(server: ServerHandle, api: httpx.Client, inbox: str) -> None:
    deliver(server, inbox, subject="keep")
    deliver(server, inbox, subject="drop")
    drop = api.get(f"/api/addresses/{inbox}/messages").json()[0]
    got = api.get(f"/api/addresses/{inbox}/messages/{drop['_id']}")
    assert got.status_code == 200 and got.json() == drop
    deleted = api.delete(f"/api/addresses/{inbox}/messages/{drop['_id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"_id": drop["_id"], "inbox": inbox,
                              "message": "Message was deleted."}
    again = api.get(f"/api/addresses/{inbox}/messages/{drop['_id']}")
    assert again.status_code == 404
    assert again.json() == {"message": "Message not found", "error": "Not Found"}
    assert api.delete(f"/api/addresses/{inbox}/messages/{drop['_id']}").status_code == 404
    assert [m["subject"] for m in api.get(f"/api/addresses/{inbox}/messages").json()] == ["keep"]


def test_message_of_another_inbox_is_not_found(
    server: ServerHandle, api: httpx.Client, inbox: str
) -> None:
    deliver(server, inbox)
    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    other = unique_inbox()
    assert api.get(f"/api/addresses/{other}/messages/{message['_id']}").status_code == 404
    assert api.get(f"/api/raw/{other}/{message['_id']}").status_code == 404
    assert api.delete(f"/api/addresses/{other}/messages/{message['_id']}").status_code == 404


def test_purge_inbox(server: ServerHandle, api: httpx.Client, inbox: str) -> None:
    for _ in range(3):
        deliver(server, inbox)
    other = unique_inbox()
    deliver(server, other)
    purged = api.delete(f"/api/addresses/{inbox}/messages")
    assert purged.status_code == 204 and purged.content == b""
    assert api.get(f"/api/addresses/{inbox}/message-count").json()["count"] == 0
    assert api.get(f"/api/addresses/{other}/message-count").json()["count"] == 1


def test_deleting_one_recipient_copy_keeps_the_other(
    server: ServerHandle, api: httpx.Client
) -> None:
    import smtplib

    from tests.helpers import make_message

    first, second = unique_inbox(), unique_inbox()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("a@example.org", [first, second], make_message(first, subject="shared"))
    (one,) = api.get(f"/api/addresses/{first}/messages").json()
    (two,) = api.get(f"/api/addresses/{second}/messages").json()
    assert api.delete(f"/api/addresses/{first}/messages/{one['_id']}").status_code == 200
    raw = api.get(f"/api/raw/{second}/{two['_id']}")
    assert raw.status_code == 200 and b"Subject: shared" in raw.content


def test_unknown_route_and_method_are_json(api: httpx.Client, inbox: str) -> None:
    missing = api.get("/api/does-not-exist")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong = api.post(f"/api/addresses/{inbox}/message-count")
    assert wrong.status_code == 405 and wrong.json()["error"] == "Method Not Allowed"


def test_healthz_reports_ready(anon: httpx.Client) -> None:
    response = anon.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["smtp"]["listening"] is True
