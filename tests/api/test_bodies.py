"""Body, header and attachment endpoints: content types, sanitising, downloads."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.helpers import DATA, ServerHandle, deliver, send_raw, unique_inbox


@pytest.fixture(scope="module")
def invoice(server: ServerHandle) -> tuple[str, str]:
    """The attachments fixture (cid image + PDF) delivered once; returns (inbox, id)."""
    inbox = unique_inbox()
    assert send_raw(server, (DATA / "messages" / "attachments.eml").read_bytes(), [inbox]) == {}
    with httpx.Client(base_url=server.http_url, headers={"Mailsac-Key": server.key},
                      timeout=30) as api:
        return inbox, api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]


def test_raw_is_byte_exact_text_plain(server: ServerHandle, api: httpx.Client, inbox: str) -> None:
    sent = deliver(server, inbox, body="Ünïcödé body\n")
    mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
    raw = api.get(f"/api/raw/{inbox}/{mid}")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.content.endswith(sent)
    assert "content-disposition" not in raw.headers
    download = api.get(f"/api/raw/{inbox}/{mid}", params={"download": "1"})
    assert download.headers["content-disposition"] == f'attachment; filename="{mid}.eml"'


def test_html_bodies(server: ServerHandle, api: httpx.Client, inbox: str) -> None:
    html = ('<p onclick="steal()">Hi <a href="https://ok.example/x?a=1&amp;b=2">go</a></p>'
            '<script>alert(1)</script><img src="https://tracker.example/p.gif">')
    deliver(server, inbox, body="plain part", html=html)
    mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
    dirty = api.get(f"/api/dirty/{inbox}/{mid}")
    assert dirty.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script>" in dirty.text  # as sent...
    assert "sandbox" in dirty.headers["content-security-policy"]  # ...but never runs here
    body = api.get(f"/api/body/{inbox}/{mid}")
    assert body.headers["content-type"].startswith("text/html")
    assert "<script" not in body.text and "alert(1)" not in body.text
    assert "onclick" not in body.text
    assert "tracker.example" not in body.text
    assert 'href="https://ok.example/x?a=1&amp;b=2"' in body.text
    assert 'rel="noopener noreferrer nofollow"' in body.text
    text = api.get(f"/api/text/{inbox}/{mid}")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.strip() == "plain part"
    links = api.get(f"/api/addresses/{inbox}/messages/{mid}").json()["links"]
    assert links[0] == "https://ok.example/x?a=1&b=2"


def test_text_from_html_and_html_from_text(
    server: ServerHandle, api: httpx.Client
) -> None:
    import smtplib

    inbox = unique_inbox()
    html_only = (b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                 b"<p>Line one<br>Line two</p><script>x()</script>\r\n")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("a@example.org", [inbox], html_only)
    mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
    text = api.get(f"/api/text/{inbox}/{mid}").text
    assert "Line one" in text and "Line two" in text and "x()" not in text
    other = unique_inbox()
    deliver(server, other, body="just <text> & more")
    mid = api.get(f"/api/addresses/{other}/messages").json()[0]["_id"]
    dirty = api.get(f"/api/dirty/{other}/{mid}").text
    assert "just &lt;text&gt; &amp; more" in dirty


def test_dirty_inlines_cid_images(api: httpx.Client, invoice: tuple[str, str]) -> None:
    inbox, mid = invoice
    dirty = api.get(f"/api/dirty/{inbox}/{mid}").text
    assert "cid:" not in dirty
    assert 'src="data:image/png;base64,' in dirty
    assert "https://vendor.example/pixel.gif" in dirty  # untouched otherwise
    body = api.get(f"/api/body/{inbox}/{mid}").text
    assert "data:image/png;base64," in body and "pixel.gif" not in body


def test_attachment_list_and_downloads(api: httpx.Client, invoice: tuple[str, str]) -> None:
    inbox, mid = invoice
    listed = api.get(f"/api/addresses/{inbox}/messages/{mid}/attachments").json()
    pdf = next(a for a in listed if a["contentType"] == "application/pdf")
    png = next(a for a in listed if a["contentType"] == "image/png")
    base = f"/api/addresses/{inbox}/messages/{mid}/attachments"
    for ident in (pdf["checksum"], "INV-1001.pdf"):
        got = api.get(f"{base}/{ident}")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/pdf"
        assert hashlib.md5(got.content).hexdigest() == pdf["checksum"]
        assert len(got.content) == pdf["length"]
        assert "INV-1001.pdf" in got.headers["content-disposition"]
    by_cid = api.get(f"{base}/{png['contentId']}")
    assert by_cid.status_code == 200 and by_cid.content.startswith(b"\x89PNG")
    missing = api.get(f"{base}/nope.txt")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Attachment not found", "error": "Not Found"}


@pytest.mark.parametrize("param", ["format", "messageHeadersFormat"])
def test_header_formats(api: httpx.Client, invoice: tuple[str, str], param: str) -> None:
    inbox, mid = invoice
    base = f"/api/addresses/{inbox}/messages/{mid}/headers"
    as_json = api.get(base).json()
    assert as_json["subject"] == ["Invoice INV-1001"]
    assert as_json["received"][0].startswith("from ")
    ordered = api.get(base, params={param: "json-ordered"}).json()
    assert ordered[0]["name"] == "Received"
    assert {"name": "Subject", "value": "Invoice INV-1001"} in ordered
    plain = api.get(base, params={param: "plain"})
    assert plain.headers["content-type"].startswith("text/plain")
    assert plain.text.startswith("Received: from ")
    assert "Subject: Invoice INV-1001" in plain.text and "JVBERi0" not in plain.text
    bad = api.get(base, params={param: "xml"})
    assert bad.status_code == 400
    assert api.get(f"/api/headers/{inbox}/{mid}").json() == as_json


def test_security_headers_on_every_response(anon: httpx.Client) -> None:
    for path in ("/healthz", "/api/openapi.json", "/nope"):
        response = anon.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
