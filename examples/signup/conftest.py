"""Fixtures of the sign-up example: the app under test and a headless Chromium page.

``mailsac_server`` and ``mailsac_inbox`` come from mailsac's pytest plugin (installed
with the package); nothing else is needed to get an inbox per test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from mailsac.pytest_plugin import MailsacServer

sys.path.insert(0, str(Path(__file__).parent))
from app import SignupApp  # noqa: E402  (the app sits next to this file)

# Debian's Chromium when present (as in mailsac's own browser tests), else Playwright's.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def signup_app(mailsac_server: MailsacServer) -> Iterator[SignupApp]:
    """The application under test, sending its mail to the mailsac server."""
    app = SignupApp(mailsac_server.smtp_host or "127.0.0.1", mailsac_server.smtp_port).start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = CHROMIUM if os.access(CHROMIUM, os.X_OK) else None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()
