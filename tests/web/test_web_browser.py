"""The web viewer in a real headless Chromium against the real server process."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from tests.helpers import ServerHandle, client, deliver, new_account, unique_inbox
from tests.web.support import WAIT_MS, GetRecorder, Traffic, screenshot

expect.set_options(timeout=WAIT_MS)

EVIL_HTML = """<html><head><title>t</title></head><body>
<h1 id="greeting">Hello from the mail</h1>
<script>document.title = 'pwned'; window.parent.document.body.dataset.pwned = 'script';</script>
<img src="x" onerror="window.parent.document.body.dataset.pwned = 'onerror'">
<p style="color: #064">Styled text</p>
<img alt="tracker" src="{tracker}/pixel.png?mail=1">
<div style="background: url({tracker}/bg.png)">bg</div>
<a href="https://example.test/confirm?token=abc">Confirm</a>
</body></html>"""


def _origin(server: ServerHandle) -> str:
    return server.http_url


def _open_inbox(page: Page, server: ServerHandle, inbox: str) -> None:
    page.goto(f"{server.http_url}/inbox/{inbox}")
    expect(page.locator("#messages[data-live='sse']")).to_be_attached()


def test_mail_appears_live_and_opens_sandboxed(
    server: ServerHandle, page: Page, traffic: Traffic, recorder: GetRecorder
) -> None:
    inbox = unique_inbox()
    page.goto(f"{server.http_url}/")
    page.fill("#local", inbox)
    page.click("button:has-text('Open inbox')")
    expect(page).to_have_url(f"{server.http_url}/inbox/{inbox}")
    expect(page.locator("#messages[data-live='sse']")).to_be_attached()
    expect(page.locator(".empty")).to_contain_text("No messages yet")
    page.evaluate("window.__sameDocument = true")

    deliver(server, inbox, subject="Live arrival", body="Plain part: hello",
            html=EVIL_HTML.format(tracker=recorder.url))
    row = page.locator("tr.message-row", has_text="Live arrival")
    expect(row).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    expect(page.locator("#live-status")).to_contain_text("New message")
    screenshot(page, "inbox")

    with page.expect_navigation():
        row.get_by_role("link", name="Live arrival").click()
    page.wait_for_load_state("load")  # the body frame (and any image in it) has loaded
    frame_el = page.locator("iframe#mail-body")
    sandbox = frame_el.get_attribute("sandbox") or ""
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox
    body = page.frame_locator("iframe#mail-body")
    expect(body.locator("h1")).to_have_text("Hello from the mail")
    expect(body.locator("p")).to_have_css("color", "rgb(0, 102, 68)")  # inline style kept
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.title().startswith("Live arrival")
    frame = next(f for f in page.frames if f.url.endswith("/body"))
    assert frame.title() != "pwned"
    assert recorder.paths == [], "a remote image was loaded without asking"
    expect(page.get_by_role("link", name="Load remote images")).to_be_visible()
    screenshot(page, "message")

    traffic.assert_only(_origin(server))
    traffic.assert_no_csp_violation()


def test_tabs_work_with_javascript(server: ServerHandle, page: Page, traffic: Traffic) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="Tabbed", body="Visit https://example.test/a now",
            html="<p>Visit <a href='https://example.test/a'>here</a></p>")
    _open_inbox(page, server, inbox)
    page.get_by_role("link", name="Tabbed").click()
    expect(page.locator("#panel-html")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("link", name="Text").click()
    expect(page.locator("#panel-text")).to_be_visible()
    expect(page.locator("#panel-html")).to_be_hidden()
    expect(page.locator("#panel-text pre")).to_contain_text("Visit https://example.test/a")
    assert urlsplit(page.url).query == "view=text"
    page.get_by_role("link", name=re.compile("^Links")).click()
    expect(page.locator("#panel-links a")).to_have_attribute("href", "https://example.test/a")
    page.get_by_role("link", name="Headers").click()
    expect(page.locator("#panel-headers")).to_contain_text("Subject")
    page.get_by_role("link", name="Raw source").click()
    expect(page.locator("#panel-raw pre")).to_contain_text("Subject: Tabbed")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "message-raw")
    traffic.assert_only(_origin(server))
    traffic.assert_no_csp_violation()


def test_remote_images_load_only_when_asked(
    server: ServerHandle, page: Page, recorder: GetRecorder
) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="Pictures", html=EVIL_HTML.format(tracker=recorder.url))
    _open_inbox(page, server, inbox)
    page.get_by_role("link", name="Pictures").click()
    page.wait_for_load_state("load")
    assert recorder.paths == []
    with page.expect_navigation():
        page.get_by_role("link", name="Load remote images").click()
    paths = recorder.wait_for(1)
    assert any(p.startswith("/pixel.png") for p in paths), paths
    assert not any(p.startswith("/bg.png") for p in paths), "CSS url() must stay blocked"
    assert page.evaluate("document.body.dataset.pwned") is None


def test_keyless_viewer_opens_only_the_latest_public_message(
    server: ServerHandle, page: Page, traffic: Traffic
) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="Older mail")
    deliver(server, inbox, subject="Newest mail")
    with client(server, server.key) as api:
        older_id = api.get(f"/api/addresses/{inbox}/messages").json()[1]["_id"]
    _open_inbox(page, server, inbox)
    expect(page.get_by_role("link", name="Newest mail")).to_be_visible()
    older = page.locator("tr.message-row", has_text="Older mail")
    expect(older).to_contain_text("key needed")
    expect(older.get_by_role("link")).to_have_count(0)

    answer = page.goto(f"{server.http_url}/inbox/{inbox}/{older_id}")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "A key is needed to open this message")
    page.fill("#key", server.key)
    page.get_by_role("button", name="Use key").click()
    expect(page.get_by_role("heading", name="Older mail")).to_be_visible()
    assert server.key not in page.url
    assert not any(server.key in url for url in traffic.urls)
    traffic.assert_only(_origin(server))


def test_private_inbox_needs_its_key_and_the_key_never_reaches_a_url(
    server: ServerHandle, page: Page, traffic: Traffic
) -> None:
    _, key = new_account(server, "webowner")
    inbox = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{inbox}").status_code == 200
    for n in range(3):
        deliver(server, inbox, subject=f"Private secret {n}")

    answer = page.goto(f"{server.http_url}/inbox/{inbox}")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This inbox is private")
    assert "Private secret" not in page.content()

    page.fill("#key", key)
    page.get_by_role("button", name="Use key").click()
    expect(page).to_have_url(f"{server.http_url}/inbox/{inbox}")
    rows = page.locator("tr.message-row")
    expect(rows).to_have_count(3)
    expect(page.locator("#messages[data-live='sse']")).to_be_attached()
    assert key not in page.content()
    cookies = page.context.cookies()
    (session,) = [c for c in cookies if c["name"] == "mailsac_viewer"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["value"] != key
    screenshot(page, "private-inbox")

    # Delete one message (its page has the button), then purge the rest.
    page.get_by_role("link", name="Private secret 2").click()
    page.get_by_role("button", name="Delete message").click()
    expect(page).to_have_url(f"{server.http_url}/inbox/{inbox}")
    expect(rows).to_have_count(2)
    expect(page.get_by_text("Private secret 2")).to_have_count(0)
    page.get_by_role("button", name="Purge inbox").click()
    expect(page.locator(".empty")).to_contain_text("No messages")
    with client(server, key) as api:
        assert api.get(f"/api/addresses/{inbox}/messages").json() == []

    # Mail that arrives now shows up live for the key's holder.
    deliver(server, inbox, subject="Private live")
    expect(page.locator("tr.message-row", has_text="Private live")).to_be_visible()

    page.get_by_role("button", name="Forget key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("This inbox is private")
    assert page.context.cookies() == [] or all(
        c["name"] != "mailsac_viewer" for c in page.context.cookies())

    assert all(key not in url for url in traffic.urls)
    assert all(key not in (r.headers.get("referer") or "") for r in traffic.requests)
    traffic.assert_only(_origin(server))
    traffic.assert_no_csp_violation()


def test_small_screen_layout(server: ServerHandle, page: Page) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="On a phone")
    page.set_viewport_size({"width": 390, "height": 844})
    _open_inbox(page, server, inbox)
    expect(page.get_by_role("link", name="On a phone")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"horizontal scrolling on a phone: {width}px"
    screenshot(page, "inbox-phone")


def test_polling_takes_over_when_event_source_fails(
    server: ServerHandle, page: Page, traffic: Traffic
) -> None:
    page.route("**/events", lambda route: route.fulfill(status=503, body="unavailable"))
    inbox = unique_inbox()
    page.goto(f"{server.http_url}/inbox/{inbox}")
    expect(page.locator("#messages[data-live='poll']")).to_be_attached()
    page.evaluate("window.__sameDocument = true")
    deliver(server, inbox, subject="Found by polling")
    expect(page.get_by_role("link", name="Found by polling")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    traffic.assert_only(_origin(server))
