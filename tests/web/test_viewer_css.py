"""Issue 19: the viewer shows styled mail as its recipient sees it. Real-world-shaped
transactional, dark-mode and table-layout mails are opened in headless Chromium; every
link's text must contrast with what is drawn behind it, and no url() may survive."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Frame, Page, expect

from tests.helpers import ServerHandle, deliver, unique_inbox
from tests.web.support import WAIT_MS, GetRecorder, Traffic, screenshot

expect.set_options(timeout=WAIT_MS)

TRANSACTIONAL = """<!DOCTYPE html><html><head><style>a {{ color: #fff }}</style></head>
<body style="margin:0;padding:0">
<table width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center"
 style="padding:32px 16px;font-family:Arial,sans-serif">
<h1 style="font-size:22px;color:#333333">Almost there!</h1>
<p style="color:#555;line-height:1.5">Please confirm your address.</p>
<a href="https://shop.example/confirm?t=1" style="background:#d35400;color:#fff;
 padding:12px 24px;border-radius:4px;text-decoration:none;display:inline-block;
 font-weight:bold">Confirm your e-mail</a>
<p><a href="https://shop.example/app" style="background:#1a73e8
 url({tracker}/btn.png) no-repeat;color:#ffffff;padding:10px 18px;display:inline-block;
 border-radius:20px">Open the app</a></p>
<p><a href="https://shop.example/offer" style="background:url({tracker}/dark.jpg)
 center/cover;color:#fff;padding:10px">Today's offer</a></p>
</td></tr></table></body></html>"""

DARK_MODE = """<html><body style="background:#121212;color:#e8eaed;margin:0">
<div style="background-color:#1e1e1e;padding:24px;border:1px solid #333;border-radius:8px;
 max-width:560px;margin:0 auto">
<p style="font-family:'Google Sans',Roboto,sans-serif">Your order has shipped.</p>
<a href="https://dark.example/track" style="color:#8ab4f8">Track your parcel</a>
<table bgcolor="#202124" cellpadding="12"><tr><td>
<font color="#fdd663"><a href="https://dark.example/help"
 style="color:#fdd663">Need help?</a></font></td></tr></table>
<p><a href="https://dark.example/prefs"
 style="background-image:url({tracker}/bg.png);background-color:#303134;color:#e8eaed;
 padding:4px 8px">Preferences</a></p>
</div></body></html>"""

NEWSLETTER = """<html><body bgcolor="#f4f4f4">
<table width="100%" bgcolor="#f4f4f4" cellpadding="0" cellspacing="0" border="0"><tr>
<td align="center" valign="top">
<table width="600" bgcolor="#ffffff" cellpadding="0" cellspacing="0" border="0">
<tr><td bgcolor="#003366" align="center" style="padding:20px">
<a href="https://news.example/" style="color:#ffffff;font-size:24px;
 text-decoration:none">The Weekly</a></td></tr>
<tr><td style="padding:16px;font-family:Georgia,serif;line-height:1.6">
<p>Three stories this week.</p><a href="https://news.example/1">Read more</a>
</td></tr>
<tr><td align="center" style="padding:8px"><table cellpadding="0" cellspacing="0"><tr>
<td bgcolor="#1e8449" style="border-radius:3px"><a href="https://news.example/sub"
 style="color:#ffffff;padding:8px 16px;display:inline-block;
 text-decoration:none">Subscribe</a></td></tr></table></td></tr>
<tr><td bgcolor="#222222" style="padding:12px;background:#222222
 url({tracker}/footer.png) repeat-x"><font size="2" color="#aaaaaa">
<a href="https://news.example/unsub" style="color:#aaaaaa">Unsubscribe</a></font></td></tr>
</table></td></tr></table></body></html>"""

# Each link's text colour and the first opaque background behind it (white if none),
# and their WCAG contrast ratio.
CONTRAST_JS = """links => links.map(a => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => { const v = c.slice(0, 3).map(x => { x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  let bg = [255, 255, 255], el = a;
  for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { bg = c; break; }
  }
  const fg = rgb(getComputedStyle(a).color);
  const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {text: a.textContent.trim(), fg: fg, bg: bg,
          image: getComputedStyle(a).backgroundImage,
          ratio: (hi + 0.05) / (lo + 0.05)};
})"""


def _open_message(page: Page, server: ServerHandle, inbox: str, subject: str) -> Frame:
    page.goto(f"{server.http_url}/inbox/{inbox}")
    row = page.get_by_role("link", name=subject)
    expect(row).to_be_visible()
    with page.expect_navigation():
        row.click()
    page.wait_for_load_state("load")
    expect(page.frame_locator("iframe#mail-body").locator("a").first).to_be_attached()
    return next(f for f in page.frames if f.url.endswith("/body"))


@pytest.mark.parametrize(("name", "html", "expected"), [
    ("transactional", TRANSACTIONAL, {"Confirm your e-mail", "Open the app", "Today's offer"}),
    ("dark-mode", DARK_MODE, {"Track your parcel", "Need help?", "Preferences"}),
    ("newsletter", NEWSLETTER, {"The Weekly", "Read more", "Subscribe", "Unsubscribe"}),
])  # fmt: skip
def test_every_link_is_readable_and_nothing_is_fetched(
    server: ServerHandle, api: httpx.Client, page: Page, traffic: Traffic,
    recorder: GetRecorder, name: str, html: str, expected: set[str],
) -> None:
    inbox = unique_inbox()
    subject = f"CSS {name}"
    deliver(server, inbox, subject=subject, body="text part",
            html=html.format(tracker=recorder.url))

    (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
    body = api.get(f"/api/body/{inbox}/{message['_id']}").text
    assert "url(" not in body.lower() and recorder.url not in body
    assert "background" in body  # the colours the links were written against are kept

    frame = _open_message(page, server, inbox, subject)
    links: list[dict[str, Any]] = frame.locator("a").evaluate_all(CONTRAST_JS)
    screenshot(page, f"css-{name}")
    assert {link["text"] for link in links} == expected
    for link in links:
        assert link["text"], link
        assert link["image"] == "none", link  # no background image of any kind
        assert link["ratio"] >= 3, f"{name}: link {link['text']!r} is unreadable: {link}"

    assert recorder.paths == [], "a background image was fetched"
    traffic.assert_only(server.http_url)
