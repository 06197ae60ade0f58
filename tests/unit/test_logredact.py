"""Secrets never reach a log line: the redacting filter and its linear patterns."""

from __future__ import annotations

import io
import logging

import pytest

from mailsac.logredact import RedactingFilter, install, redact
from tests.timing import assert_linear

KEY = "k_abcdefghijklmnopqrstuvwxyz"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"

CASES = [
    (f'127.0.0.1:5000 - "WebSocket /api/ws?key={KEY}&addresses=a@b.test" [accepted]', KEY),
    (f"GET /api/addresses/a@b/messages?_mailsacKey={KEY}", KEY),
    (f"HTTP Request: POST {SLACK} \"HTTP/1.1 200 OK\"", "XXXXsecretXXXX"),
    ("webhook to https://user:hunter2@example.com/h failed", "hunter2"),
    ("posting to https://example.com/hook?token=s3cr3t-value", "s3cr3t-value"),
    ("headers: {'Mailsac-Key': 'plain-admin-secret'}", "plain-admin-secret"),
    ("[(b'mailsac-key', b'plain-admin-secret')]", "plain-admin-secret"),
    ("Mailsac-Key: plain-admin-secret", "plain-admin-secret"),
    (f"the key {KEY} was used", KEY),
    ("form body key=letmein&x=1", "letmein"),
    ("postgresql+asyncpg://mailsac:dbpass@127.0.0.1:5432/mailsac", "dbpass"),
]


@pytest.mark.parametrize(("line", "secret"), CASES)
def test_secret_is_masked(line: str, secret: str) -> None:
    clean = redact(line)
    assert secret not in clean and "***" in clean


@pytest.mark.parametrize("line", ["mailsac 1.0 ready: SMTP 127.0.0.1:2525",
                                  "webhook 12 to host example.com:443 failed for good: timeout",
                                  "retention recycled 3 message(s)"])
def test_ordinary_lines_are_unchanged(line: str) -> None:
    assert redact(line) == line


def test_filter_masks_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test.logredact")
    logger.propagate = False
    logger.addHandler(handler)
    handler.addFilter(RedactingFilter())
    try:
        logger.warning("connect %s with %s", SLACK, {"Mailsac-Key": KEY})
        try:
            raise RuntimeError(f"failed on {SLACK}?key={KEY}")
        except RuntimeError:
            logger.exception("boom")
        logger.error("stack", stack_info=True, extra={"x": 1})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "XXXXsecretXXXX" not in text and KEY not in text
    assert "RuntimeError" in text and "boom" in text


def test_install_covers_root_handlers_and_quiets_httpx() -> None:
    root = logging.Logger("fake-root")
    root.addHandler(logging.StreamHandler(io.StringIO()))
    first = install(root)
    assert install(root) is first  # idempotent
    assert any(isinstance(f, RedactingFilter) for f in root.handlers[0].filters)
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING


@pytest.mark.parametrize("unit", ["?a=", "k_", "://", "a://x@", "hooks.slack.com/",
                                  "Mailsac-Key:", "key=", "https://u", "a" * 30])
def test_redaction_cost_is_linear(unit: str) -> None:
    assert_linear(redact, lambda n: unit * n, 5000)
