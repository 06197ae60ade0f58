"""The operator's viewer settings, on a second server process started with them:
``MAILSAC_UI_PUBLIC=full`` (classroom/QA: whole public inboxes without a key) and
``MAILSAC_UI_DOMAIN`` (the address form's pre-filled domain)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)
from tests.web.support import WAIT_MS, Traffic, screenshot

expect.set_options(timeout=WAIT_MS)
UI_DOMAIN = "qa.example.test"


@pytest.fixture(scope="module")
def full_server(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-web-"))
    handle = start_server(data_dir, {"DATABASE_URL": database_url,
                                     "MAILSAC_UI_PUBLIC": "full",
                                     "MAILSAC_UI_DOMAIN": UI_DOMAIN})
    yield handle
    code = stop_server(handle)
    assert code == 0, f"server exited with {code}:\n{handle.log()}"
    shutil.rmtree(data_dir, ignore_errors=True)


def test_full_public_inboxes_without_a_key(full_server: ServerHandle) -> None:
    inbox = unique_inbox()
    for n in range(3):
        deliver(full_server, inbox, subject=f"Lesson {n}")
    with client(full_server, full_server.key) as api:
        ids = [m["_id"] for m in api.get(f"/api/addresses/{inbox}/messages").json()]
    with httpx.Client(base_url=full_server.http_url, timeout=30) as web:
        listing = web.get(f"/inbox/{inbox}").text
        assert "key needed" not in listing
        for message_id in ids:
            assert f'href="/inbox/{inbox}/{message_id}"' in listing
            page = web.get(f"/inbox/{inbox}/{message_id}")
            assert page.status_code == 200
        # Still no private mail, and still no deleting without a key.
        _, key = new_account(full_server, "classroom")
        private = unique_inbox()
        with client(full_server, key) as api:
            assert api.post(f"/api/addresses/{private}").status_code == 200
        deliver(full_server, private, subject="Teacher only")
        answer = web.get(f"/inbox/{private}")
        assert answer.status_code == 403 and "Teacher only" not in answer.text
        assert web.post(f"/inbox/{inbox}/{ids[0]}/delete", data={}).status_code == 403


def test_address_form_prefills_the_ui_domain(
    full_server: ServerHandle, page: Page, traffic: Traffic
) -> None:
    page.goto(f"{full_server.http_url}/")
    expect(page.get_by_label("Domain")).to_have_value(UI_DOMAIN)
    screenshot(page, "index")
    page.get_by_label("Name or full address").fill("Student7")
    page.get_by_role("button", name="Open inbox").click()
    expect(page).to_have_url(f"{full_server.http_url}/inbox/student7@{UI_DOMAIN}")
    expect(page.locator("#messages[data-live='sse']")).to_be_attached()
    deliver(full_server, f"student7@{UI_DOMAIN}", subject="Homework")
    deliver(full_server, f"student7@{UI_DOMAIN}", subject="Homework 2")
    expect(page.get_by_role("link", name="Homework", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Homework 2")).to_be_visible()
    traffic.assert_only(full_server.http_url)
    traffic.assert_no_csp_violation()
