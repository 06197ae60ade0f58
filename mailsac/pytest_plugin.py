"""pytest plugin (entry point ``pytest11``): test inboxes for tests that send e-mail.

Fixtures:

- ``mailsac_server`` (session): the service the tests use. With ``--mailsac-url`` and
  ``--mailsac-key`` (or ``MAILSAC_URL`` / ``MAILSAC_KEY``) a running one; otherwise a
  throwaway service started for the session (embedded PostgreSQL, free loopback ports,
  temporary directory; see :class:`mailsac.testing.LocalService`) and stopped at its end.
- ``mailsac_client`` (session): a :class:`mailsac.client.Client` with the key.
- ``mailsac_inbox``: a fresh random address for each test (purged afterwards); when the
  test fails, the report gets a section listing what arrived in it.

Nothing happens (no server starts) unless a test requests one of these fixtures.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mailsac.client import Client, Inbox
    from mailsac.testing import LocalService

DEFAULT_DOMAIN = "example.test"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailsac", "mailsac test inboxes (the mailsac_* fixtures)")
    group.addoption("--mailsac-url", default=None,
                    help="use the mailsac service at this URL (env MAILSAC_URL) instead of "
                         "starting a throwaway one for the session")
    group.addoption("--mailsac-key", default=None,
                    help="API key for --mailsac-url (env MAILSAC_KEY)")
    group.addoption("--mailsac-smtp", default=None,
                    help="host:port of that service's SMTP listener (env MAILSAC_SMTP), "
                         "for mailsac_server.smtp_port and .send()")
    group.addoption("--mailsac-domain", default=None,
                    help=f"domain of mailsac_inbox's random addresses (env MAILSAC_DOMAIN; "
                         f"default {DEFAULT_DOMAIN})")


@dataclass
class MailsacServer:
    """How tests reach the mailsac service of this session."""

    url: str
    key: str
    smtp_host: str | None = None
    smtp_port_or_none: int | None = None
    domain: str = DEFAULT_DOMAIN
    local: LocalService | None = field(default=None, repr=False)

    @property
    def smtp_port(self) -> int:
        """The SMTP port (your application sends its mail there)."""
        if self.smtp_port_or_none is None:
            raise RuntimeError("the SMTP address of the mailsac service at "
                               f"{self.url} is unknown: pass --mailsac-smtp host:port "
                               "(or set MAILSAC_SMTP)")
        return self.smtp_port_or_none

    def client(self) -> Client:
        from mailsac.client import Client

        return Client(self.url, key=self.key)

    def random_address(self, prefix: str = "test") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:16]}@{self.domain}"

    def send(self, to: str, subject: str = "Hello", text: str = "Hi there", *,
             html: str | None = None, sender: str = "Tester <tester@example.org>") -> str:
        """Send a message to the service over SMTP; returns its Message-ID."""
        from mailsac.testing import send_mail

        return send_mail(self.smtp_host or "127.0.0.1", self.smtp_port, to, subject, text,
                         html=html, sender=sender)


def _option(config: pytest.Config, name: str, env: str) -> str | None:
    value = config.getoption(name) or os.environ.get(env) or None
    return str(value) if value else None


def _external(config: pytest.Config, url: str, domain: str) -> MailsacServer:
    from mailsac.client import Client, MailsacError

    key = _option(config, "mailsac_key", "MAILSAC_KEY")
    if not key:
        pytest.fail(f"--mailsac-url / MAILSAC_URL ({url}) needs --mailsac-key (or "
                    "MAILSAC_KEY): an API key of that service", pytrace=False)
    host, port = None, None
    smtp = _option(config, "mailsac_smtp", "MAILSAC_SMTP")
    if smtp:
        host, _, port_text = smtp.rpartition(":")
        if not host or not port_text.isdigit():
            pytest.fail(f"--mailsac-smtp / MAILSAC_SMTP must be host:port, not {smtp!r}",
                        pytrace=False)
        port = int(port_text)
    with Client(url, key=key, timeout=15) as client:
        try:
            client.me()
        except MailsacError as exc:
            pytest.fail(f"mailsac at {url} (--mailsac-url / MAILSAC_URL) is not usable with "
                        f"the given key: {exc}", pytrace=False)
    return MailsacServer(url.rstrip("/"), key, host, port, domain)


@pytest.fixture(scope="session")
def mailsac_server(pytestconfig: pytest.Config) -> Iterator[MailsacServer]:
    """The session's mailsac service (given by --mailsac-url, else a throwaway one)."""
    domain = _option(pytestconfig, "mailsac_domain", "MAILSAC_DOMAIN") or DEFAULT_DOMAIN
    url = _option(pytestconfig, "mailsac_url", "MAILSAC_URL")
    if url:
        yield _external(pytestconfig, url, domain)
        return
    from mailsac.testing import LocalService

    service = LocalService()
    try:
        service.start()
    except (RuntimeError, OSError, TimeoutError) as exc:
        pytest.fail(f"could not start a throwaway mailsac for the tests: {exc}\n"
                    "(or point the tests at a running one: --mailsac-url URL "
                    "--mailsac-key KEY)", pytrace=False)
    try:
        yield MailsacServer(service.url, service.key, service.smtp_host, service.smtp_port,
                            domain, service)
    finally:
        code = service.stop()
        if code not in (0, None):
            print(f"\nmailsac (throwaway) exited with status {code}")


@pytest.fixture(scope="session")
def mailsac_client(mailsac_server: MailsacServer) -> Iterator[Client]:
    """A :class:`mailsac.client.Client` for the session's service."""
    with mailsac_server.client() as client:
        yield client


@pytest.fixture()
def mailsac_inbox(mailsac_server: MailsacServer, mailsac_client: Client) -> Iterator[Inbox]:
    """A fresh random address (``inbox.email``) for this test; purged afterwards."""
    from mailsac.client import MailsacError

    inbox = mailsac_client.inbox(mailsac_server.random_address())
    yield inbox
    with contextlib.suppress(MailsacError):
        inbox.purge()


def _describe(inbox: Inbox) -> str:
    messages = inbox.messages(limit=20)
    if not messages:
        return f"mailsac inbox {inbox.email} is empty"
    lines = [f"mailsac inbox {inbox.email} (newest first):"]
    lines += [f"  - {m.summary()}  [{m.id}]" for m in messages]
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used ``mailsac_inbox`` shows what arrived in it."""
    report = yield
    inbox = getattr(item, "funcargs", {}).get("mailsac_inbox")
    if report.when == "call" and report.failed and inbox is not None:
        from mailsac.client import MailsacError

        try:
            text = _describe(inbox)
        except MailsacError as exc:
            text = f"could not list mailsac inbox {inbox.email}: {exc}"
        report.sections.append(("mailsac inbox", text))
    return report
