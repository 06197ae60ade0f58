"""The web viewer without JavaScript (httpx): pages, headers, downloads, CSRF, events."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    new_account,
    send_raw,
    unique_inbox,
)
from tests.web.support import csrf_token, signed_in_client

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")


def _ids(server: ServerHandle, inbox: str, key: str | None = None) -> list[str]:
    with client(server, key or server.key) as api:
        return [m["_id"] for m in api.get(f"/api/addresses/{inbox}/messages").json()]


@pytest.fixture()
def web(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as anonymous:
        yield anonymous


def test_pages_are_server_rendered(server: ServerHandle, web: httpx.Client) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="No script needed <b>", body="Body text for https://x.test/y",
            html="<p>Rendered <i>HTML</i> part</p>")
    (message_id,) = _ids(server, inbox)

    listing = web.get(f"/inbox/{inbox}")
    assert listing.status_code == 200
    assert "No script needed &lt;b&gt;" in listing.text  # escaped
    assert "Alice &lt;alice@example.org&gt;" in listing.text
    assert f'href="/inbox/{inbox}/{message_id}"' in listing.text

    page = web.get(f"/inbox/{inbox}/{message_id}", params={"view": "text"})
    assert page.status_code == 200
    text_panel = re.search(r'<section id="panel-text"[^>]*>', page.text)
    assert text_panel and "hidden" not in text_panel.group(0)
    assert "Body text for https://x.test/y" in page.text
    assert 'href="https://x.test/y"' in page.text  # the links list
    assert "<th scope=\"row\">Subject</th>" in page.text  # headers
    assert f'src="/inbox/{inbox}/{message_id}/body"' in page.text
    assert "<script>" not in page.text.replace('<script src="/static/viewer.js" defer></script>',
                                               "")

    raw_page = web.get(f"/inbox/{inbox}/{message_id}", params={"view": "raw"})
    assert "Subject: No script needed &lt;b&gt;" in raw_page.text

    body = web.get(f"/inbox/{inbox}/{message_id}/body")
    assert "Rendered <i>HTML</i> part" in body.text


def test_security_headers(server: ServerHandle, web: httpx.Client) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="Headers", html="<p>x<script>alert(1)</script></p>")
    (message_id,) = _ids(server, inbox)
    for path in ("/", f"/inbox/{inbox}", f"/inbox/{inbox}/{message_id}"):
        answer = web.get(path)
        assert answer.headers["content-security-policy"] == PAGE_CSP, path
        assert answer.headers.get_list("x-frame-options") == ["DENY"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert " style=" not in answer.text and "<style" not in answer.text

    body = web.get(f"/inbox/{inbox}/{message_id}/body")
    csp = body.headers["content-security-policy"]
    assert csp.startswith("sandbox") and "allow-scripts" not in csp
    assert "allow-same-origin" not in csp and "img-src data:;" in csp
    assert "frame-ancestors 'self'" in csp
    assert body.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert "<script" not in body.text and "alert" not in body.text

    remote = web.get(f"/inbox/{inbox}/{message_id}/body", params={"images": "1"})
    csp = remote.headers["content-security-policy"]
    assert "img-src data: http: https:;" in csp and "script" not in csp

    raw = web.get(f"/inbox/{inbox}/{message_id}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.headers["content-security-policy"].startswith("sandbox")
    download = web.get(f"/inbox/{inbox}/{message_id}/raw", params={"download": "1"})
    assert download.headers["content-disposition"].startswith("attachment;")

    for path in ("/static/viewer.js", "/static/viewer.css"):
        static = web.get(path)
        assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in static.text and "https://" not in static.text


def test_attachments_download(server: ServerHandle, web: httpx.Client) -> None:
    inbox = unique_inbox()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", inbox, "With a file"
    msg.set_content("see attached")
    msg.add_attachment(b"<html><script>alert(1)</script></html>", maintype="text",
                       subtype="html", filename="évil page.html")
    send_raw(server, msg.as_bytes(), [inbox])
    (message_id,) = _ids(server, inbox)
    listing = web.get(f"/inbox/{inbox}")
    assert "1 attachment" in listing.text
    page = web.get(f"/inbox/{inbox}/{message_id}", params={"view": "attachments"})
    link = re.search(r'href="(/inbox/[^"]+/attachments/[0-9a-f]+)"', page.text)
    assert link, page.text
    got = web.get(html.unescape(link.group(1)))
    assert got.status_code == 200
    assert got.content == b"<html><script>alert(1)</script></html>"
    assert got.headers["content-type"] == "application/octet-stream"
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "%C3%A9vil%20page.html" in disposition
    assert got.headers["content-security-policy"].startswith("sandbox")


def test_private_inbox_is_refused_without_its_key(server: ServerHandle, web: httpx.Client) -> None:
    _, key = new_account(server, "nojs")
    _, other_key = new_account(server, "nojsother")
    inbox = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{inbox}").status_code == 200
    deliver(server, inbox, subject="Top secret")
    (message_id,) = _ids(server, inbox, key)
    paths = [f"/inbox/{inbox}", f"/inbox/{inbox}/list", f"/inbox/{inbox}/events",
             f"/inbox/{inbox}/{message_id}", f"/inbox/{inbox}/{message_id}/body",
             f"/inbox/{inbox}/{message_id}/raw"]
    with signed_in_client(server, other_key) as other:
        for viewer in (web, other):
            for path in paths:
                answer = viewer.get(path)
                assert answer.status_code == 403, (path, answer.status_code)
                assert "Top secret" not in answer.text
    with signed_in_client(server, key) as owner:
        assert "Top secret" in owner.get(f"/inbox/{inbox}").text
        assert "Top secret" in owner.get(f"/inbox/{inbox}/{message_id}").text


def test_destructive_posts_need_the_csrf_token(server: ServerHandle, web: httpx.Client) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="Keep me")
    deliver(server, inbox, subject="Me too")
    first, second = _ids(server, inbox)
    delete, purge = f"/inbox/{inbox}/{first}/delete", f"/inbox/{inbox}/purge"

    assert web.post(delete, data={}).status_code == 403  # no session at all
    with signed_in_client(server, server.key) as signed:
        token = csrf_token(signed.get(f"/inbox/{inbox}/{first}").text)
        assert signed.post(delete, data={}).status_code == 403
        assert signed.post(delete, data={"csrf": "wrong" + token}).status_code == 403
        assert signed.post(purge, data={"csrf": ""}).status_code == 403
        assert signed.post("/session/end", data={}).status_code == 403
        assert _ids(server, inbox) == [first, second]
        # Another browser's token does not work either.
        with signed_in_client(server, server.key) as other:
            other_token = csrf_token(other.get(f"/inbox/{inbox}").text)
            assert other_token != token
            assert signed.post(delete, data={"csrf": other_token}).status_code == 403

        done = signed.post(delete, data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == f"/inbox/{inbox}"
        assert _ids(server, inbox) == [second]
        assert signed.post(purge, data={"csrf": token}).status_code == 303
        assert _ids(server, inbox) == []


def test_key_form(server: ServerHandle, web: httpx.Client) -> None:
    bad = web.post("/session", data={"key": "k_notakey", "next": "/inbox/x@y.test"})
    assert bad.status_code == 401 and "not valid" in bad.text
    assert "mailsac_viewer" not in web.cookies
    cross = web.post("/session", data={"key": server.key},
                     headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and "mailsac_viewer" not in web.cookies
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = web.post("/session", data={"key": server.key, "next": target})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and server.key not in cookie
    assert server.key not in answer.headers["location"]


def test_address_form_and_bad_addresses(server: ServerHandle, web: httpx.Client) -> None:
    answer = web.get("/inbox", params={"local": "Jeff+tag", "domain": "Example.TEST"})
    assert answer.status_code == 303 and answer.headers["location"] == "/inbox/jeff@example.test"
    answer = web.get("/inbox", params={"local": "ann@x.test", "domain": "ignored.test"})
    assert answer.headers["location"] == "/inbox/ann@x.test"
    answer = web.get("/inbox", params={"local": "no domain"})
    assert answer.status_code == 400 and 'role="alert"' in answer.text
    assert web.get("/inbox/not-an-address").status_code == 400
    assert web.get(f"/inbox/{unique_inbox()}/nope-0").status_code == 404


def test_events_stream_signals_visible_mail(server: ServerHandle) -> None:
    inbox = unique_inbox()
    with httpx.Client(base_url=server.http_url, timeout=30) as web, \
            web.stream("GET", f"/inbox/{inbox}/events") as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in events.headers
        lines = events.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed: nothing can be missed now
        deliver(server, inbox, subject="Pushed")
        (message_id,) = _ids(server, inbox)
        deadline = time.monotonic() + 60  # keep-alive comments come every 15 s
        for line in lines:
            if line.startswith("data:") and message_id in line:
                break
            assert time.monotonic() < deadline, "no event for the new message"
