"""examples/signup runs inside the suite (so it cannot rot): a real browser signs up and
types the code from the e-mail, with mailsac's pytest plugin against the session server."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import ROOT, ServerHandle

pytest_plugins = ["pytester"]

EXAMPLE = ROOT / "examples" / "signup"
CHROMIUM = "/usr/bin/chromium"


def test_signup_example(pytester: pytest.Pytester, server: ServerHandle) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the example needs Debian's chromium package",
                    pytrace=False)
    for name in ("app.py", "conftest.py", "test_signup.py"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    result = pytester.runpytest_subprocess(
        "--mailsac-url", server.http_url, "--mailsac-key", server.key,
        "--mailsac-smtp", f"127.0.0.1:{server.smtp_port}", "-p", "no:cacheprovider",
        timeout=300)
    result.assert_outcomes(passed=1)
