"""Fixtures of the web viewer tests: headless Chromium (Debian's package) via Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.web.support import CHROMIUM, LAUNCH_ARGS, WAIT_MS, GetRecorder, Traffic


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the web viewer tests need Debian's chromium "
                    "package (apt-get install -y chromium; scripts/test.sh does it as root)",
                    pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    ctx.set_default_navigation_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture()
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture()
def page(context: BrowserContext, traffic: Traffic) -> Page:
    new = context.new_page()
    traffic.attach(new)
    return new


@pytest.fixture()
def recorder() -> Iterator[GetRecorder]:
    rec = GetRecorder()
    yield rec
    rec.close()
