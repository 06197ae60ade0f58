"""Spam score on every message, the classifier-server endpoint and online learning."""

from __future__ import annotations

import uuid

from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)


def _score(server: ServerHandle, key: str, inbox: str) -> float:
    with client(server, key) as api:
        value = api.get(f"/api/addresses/{inbox}/messages").json()[0]["spam"]
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    return value


def _spammy_body(word: str) -> str:
    return (f"{word} {word} exclusive {word} investment opportunity, guaranteed returns. "
            f"Claim your {word} bonus now: https://{word}.example/claim")


def test_spam_check_endpoint(server: ServerHandle) -> None:
    with client(server, server.key) as api:
        ok = api.post("/api/spam-checks", json={
            "to": "x@example.test", "from": "Bank <bank@example.org>",
            "subject": "URGENT: verify your account now!!!",
            "text": "Click here to claim your prize $$$ http://bit.ly/win"})
        assert ok.status_code == 200
        body = ok.json()
        assert set(body) == {"spamminess", "spam"}
        assert 0.0 <= body["spamminess"] <= 1.0 and body["spam"] == (body["spamminess"] > 0.5)
        missing = api.post("/api/spam-checks", json={"to": "x@example.test"})
        assert missing.status_code == 400 and "from" in missing.json()["message"]


def test_marking_spam_teaches_the_model_and_files_the_message(server: ServerHandle) -> None:
    _, key = new_account(server)
    word = "zq" + uuid.uuid4().hex[:8]
    first = unique_inbox()
    deliver(server, first, subject=f"{word} offer", body=_spammy_body(word))
    before = _score(server, key, first)
    with client(server, key) as api:
        mid = api.get(f"/api/addresses/{first}/messages").json()[0]["_id"]
        marked = api.post(f"/api/messages/{mid}/spam")
        assert marked.status_code == 200 and marked.json()["folder"] == "spam"
        assert api.post("/api/messages/doesnotexist-0/spam").status_code == 404
    second = unique_inbox()
    deliver(server, second, subject=f"{word} offer", body=_spammy_body(word))
    after = _score(server, key, second)
    assert after > before  # the new words now count as spam evidence
    with client(server, key) as api:
        moved = api.put(f"/api/addresses/{second}/messages/"
                        f"{api.get(f'/api/addresses/{second}/messages').json()[0]['_id']}"
                        "/folder/spam")
        assert moved.json()["folder"] == "spam"
        back = api.post(f"/api/messages/{mid}/ham")
        assert back.status_code == 200 and back.json()["folder"] == "inbox"


def test_learning_is_private_to_visible_mail(server: ServerHandle) -> None:
    owner, key = new_account(server)
    _, other_key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        api.post(f"/api/addresses/{address}")
    deliver(server, address)
    with client(server, key) as api:
        mid = api.get(f"/api/addresses/{address}/messages").json()[0]["_id"]
    with client(server, other_key) as other:
        assert other.post(f"/api/messages/{mid}/spam").status_code == 401


def test_learned_feedback_survives_a_restart(database_url: str) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-spam-"))
    env = {"DATABASE_URL": database_url}
    word = "zr" + uuid.uuid4().hex[:8]
    handle = start_server(data_dir, env)
    try:
        _, key = new_account(handle)
        inbox = unique_inbox()
        deliver(handle, inbox, subject=f"{word} deal", body=_spammy_body(word))
        baseline = _score(handle, key, inbox)
        with client(handle, key) as api:
            mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
            api.post(f"/api/messages/{mid}/spam")
    finally:
        assert stop_server(handle) == 0
    handle = start_server(data_dir, env)
    try:
        again = unique_inbox()
        deliver(handle, again, subject=f"{word} deal", body=_spammy_body(word))
        with client(handle, handle.key) as api:
            score = api.get(f"/api/addresses/{again}/messages").json()[0]["spam"]
        assert score > baseline
        assert "replayed" in handle.log()
    finally:
        assert stop_server(handle) == 0
        shutil.rmtree(data_dir, ignore_errors=True)
