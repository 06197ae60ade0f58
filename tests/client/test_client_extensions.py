"""The client's wrappers of our issue-19 extensions, against the real session server:
extraction (``/extract``), matching waits (``to``, ``contains``, ``count``, account- and
domain-wide) and chaos rules. Built to the contract in the project rules."""

from __future__ import annotations

import smtplib
import threading
import time
import uuid

import httpx
import pytest

from mailsac.client import Client, ForbiddenError, WaitTimeout
from tests.client.conftest import Tenant
from tests.helpers import ServerHandle, deliver, make_message, unique_inbox

CONFIRM = "https://app.example/confirm?token=abc123"
UNSUBSCRIBE = "https://app.example/unsubscribe?u=1"
HTML = f"""<html><body>
<p>Welcome! Your verification code is <b>482913</b>.</p>
<p><a href="{CONFIRM}" style="background:#d35400;color:#fff;padding:12px">Confirm your
e-mail</a></p>
<p style="font-size:10px"><a href="{UNSUBSCRIBE}">Unsubscribe</a> · Acme Inc, 1 Main St</p>
</body></html>"""


def _later(delay: float, *actions: object) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        for action in actions:
            action()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_codes_and_links_are_fetched_once(server: ServerHandle) -> None:
    email = unique_inbox()
    deliver(server, email, subject="Confirm your e-mail",
            body=f"Your verification code is 482913.\nConfirm: {CONFIRM}", html=HTML)
    paths: list[str] = []
    http = httpx.Client(base_url=server.http_url, timeout=30,
                        event_hooks={"request": [lambda r: paths.append(r.url.path)]})
    with Client(server.http_url, key=server.key, http=http) as client:
        msg = client.inbox(email).wait(subject="confirm", timeout=30)
        assert msg.codes[0].value == "482913" and msg.code == "482913"
        assert 0.0 <= msg.codes[0].confidence <= 1.0 and "482913" in msg.codes[0].context
        assert msg.action_link is not None and msg.action_link.url == CONFIRM
        assert msg.action_link.kind == "confirm"
        kinds = {link.url: link.kind for link in msg.links}
        assert kinds[CONFIRM] == "confirm" and kinds[UNSUBSCRIBE] == "unsubscribe"
        assert "Confirm your" in next(lnk.text for lnk in msg.links if lnk.url == CONFIRM)
    assert sum(p.endswith("/extract") for p in paths) == 1  # cached on the message


def test_wait_matches_to_and_contains(server: ServerHandle, admin_client: Client) -> None:
    email = unique_inbox()
    local, domain = email.split("@")
    inbox = admin_client.inbox(email)
    sender = _later(0.3,
                    lambda: deliver(server, f"{local}+other@{domain}", subject="A",
                                    body="nothing to see"),
                    lambda: deliver(server, f"{local}+signup@{domain}", subject="B",
                                    body="nothing either"),
                    lambda: deliver(server, email, subject="C", body="the MAGIC-word is here"))
    by_to = inbox.wait(to=f"{local}+signup@", timeout=30)
    by_body = inbox.wait(contains="magic-word", timeout=30)
    sender.join()
    assert by_to.subject == "B" and by_body.subject == "C"


def test_wait_many_counts_and_reports_how_many_matched(server: ServerHandle,
                                                       admin_client: Client) -> None:
    email = unique_inbox()
    inbox = admin_client.inbox(email)
    sender = _later(0.2, *[lambda i=i: deliver(server, email, subject=f"batch {i}")
                           for i in range(3)])
    got = inbox.wait_many(3, subject="batch", timeout=30)
    sender.join()
    assert [m.subject for m in got] == ["batch 0", "batch 1", "batch 2"]  # oldest first
    with pytest.raises(WaitTimeout) as short:
        inbox.wait_many(4, subject="batch", timeout=0.5)
    assert short.value.matched == 3
    assert "only 3 of 4 messages matching subject contains 'batch'" in str(short.value)


def test_account_and_domain_wide_waits(server: ServerHandle, admin_client: Client,
                                       tenant: Tenant) -> None:
    domain = f"wait-{uuid.uuid4().hex[:8]}.test"
    admin_client.add_domain(domain, tenant.account)
    reserved = unique_inbox()
    tenant.client.inbox(reserved).reserve()
    tag = uuid.uuid4().hex[:8]
    sender = _later(0.3, lambda: deliver(server, reserved, subject=f"account {tag}"),
                    lambda: deliver(server, f"anyone@{domain}", subject=f"domain {tag}"))
    from_account = tenant.client.wait(subject=f"account {tag}", timeout=30)
    from_domain = tenant.client.domain(domain).wait(subject=f"domain {tag}", timeout=30)
    sender.join()
    assert from_account.inbox == reserved and from_domain.inbox == f"anyone@{domain}"
    both = tenant.client.wait_many(2, subject=tag, timeout=30)
    assert {m.subject for m in both} == {f"account {tag}", f"domain {tag}"}
    with pytest.raises(WaitTimeout) as timed_out:
        tenant.client.domain(domain).wait(subject="never", timeout=0.3)
    assert f"domain {tag}" in str(timed_out.value)
    with tenant.client.expect(subject=f"later {tag}", timeout=30) as pending:
        deliver(server, reserved, subject=f"later {tag}")
    assert pending.result().inbox == reserved


def test_chaos_rules_per_address(server: ServerHandle, tenant: Tenant) -> None:
    email = unique_inbox()
    inbox = tenant.client.inbox(email)
    inbox.reserve()
    rule = inbox.chaos.add("rcpt", code=451, message="chaos says later", times=1)
    assert rule.scope == "address" and rule.target == email
    assert (rule.stage, rule.action, rule.code, rule.times_left) == ("rcpt", "reply", 451, 1)
    assert [r.id for r in inbox.chaos.list()] == [rule.id]
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("a@example.org", [email], make_message(email, subject="refused"))
    code, text = refused.value.recipients[email]
    assert code == 451 and b"chaos says later" in text
    deliver(server, email, subject="accepted")  # the rule was for one attempt
    assert [m.subject for m in inbox.messages()] == ["accepted"]
    # A used-up rule is either gone or listed with nothing left.
    assert all(r.times_left == 0 and r.fired == 1 for r in inbox.chaos.list())
    inbox.chaos.clear()
    assert inbox.chaos.list() == []


def test_chaos_rules_per_domain_and_global(server: ServerHandle, admin_client: Client,
                                          tenant: Tenant) -> None:
    domain = f"chaos-{uuid.uuid4().hex[:8]}.test"
    admin_client.add_domain(domain, tenant.account)
    rules = tenant.client.domain(domain).chaos
    rule = rules.add("rcpt", code=550, message="domain chaos", expires_in_seconds=600)
    assert rule.scope == "domain" and rule.target == domain and rule.expires is not None
    target = f"x@{domain}"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp, \
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("a@example.org", [target], make_message(target))
    assert refused.value.recipients[target][0] == 550
    rules.remove(rule.id)
    deliver(server, target, subject="through")
    with pytest.raises(ForbiddenError):
        tenant.client.chaos.add("connect", code=421)
    # Service-wide (operator): a rule that cannot fire (probability 0), added and removed.
    global_rule = admin_client.chaos.add("data", code=554, probability=0.0)
    try:
        assert global_rule.scope == "global"
        assert global_rule.id in [r.id for r in admin_client.chaos.list()]
    finally:
        admin_client.chaos.remove(global_rule.id)
    assert global_rule.id not in [r.id for r in admin_client.chaos.list()]
