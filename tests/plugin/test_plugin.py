"""The pytest plugin (``mailsac.pytest_plugin``, entry point ``pytest11``) used from inner
pytest sessions (pytester): against the session server, and with its own throwaway one.

Inner sessions run as subprocesses, as users run them (and so that nothing they import
is left behind in, or removed from, this session's ``sys.modules``)."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import ServerHandle

pytest_plugins = ["pytester"]


def _use(server: ServerHandle) -> list[str]:
    return ["--mailsac-url", server.http_url, "--mailsac-key", server.key,
            "--mailsac-smtp", f"127.0.0.1:{server.smtp_port}", "-p", "no:cacheprovider"]


@pytest.fixture(autouse=True)
def _no_mailsac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAILSAC_URL", "MAILSAC_KEY", "MAILSAC_SMTP", "MAILSAC_DOMAIN"):
        monkeypatch.delenv(name, raising=False)


def test_inner_session_gets_fresh_inboxes(pytester: pytest.Pytester, server: ServerHandle,
                                          api: httpx.Client) -> None:
    seen = pytester.path / "seen.txt"
    pytester.makepyfile(test_inner=f"""
        SEEN = {str(seen)!r}

        def test_receives_mail(mailsac_server, mailsac_inbox):
            assert mailsac_inbox.email.endswith("@example.test")
            mailsac_server.send(mailsac_inbox.email, subject="Welcome", text="code 123456")
            msg = mailsac_inbox.wait(subject="welcome", timeout=30)
            assert "123456" in msg.text and msg.inbox == mailsac_inbox.email
            with open(SEEN, "a") as f:
                f.write(mailsac_inbox.email + "\\n")

        def test_another_inbox(mailsac_client, mailsac_inbox):
            assert mailsac_inbox.messages() == []
            assert mailsac_client.me().id
            with open(SEEN, "a") as f:
                f.write(mailsac_inbox.email + "\\n")
    """)
    result = pytester.runpytest_subprocess(*_use(server))
    result.assert_outcomes(passed=2)
    first, second = seen.read_text().split()
    assert first != second
    # Purged after the test.
    assert api.get(f"/api/addresses/{first}/message-count").json()["count"] == 0


def test_wait_timeout_failure_lists_what_arrived(pytester: pytest.Pytester,
                                                 server: ServerHandle) -> None:
    pytester.makepyfile(test_fails="""
        def test_wrong_subject(mailsac_server, mailsac_inbox):
            mailsac_server.send(mailsac_inbox.email, subject="Welcome to Acme",
                                sender="Acme <no-reply@acme.example>")
            mailsac_inbox.wait(subject="Welcome", timeout=30)   # arrived: now it is there
            mailsac_inbox.wait(subject="Password reset", timeout=1)
    """)
    result = pytester.runpytest_subprocess(*_use(server))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*WaitTimeout: no message matching subject contains 'Password reset' arrived in "
        "inbox test-*@example.test within 1 s*",
        "*no-reply@acme.example*'Welcome to Acme'*subject lacks 'Password reset'*",
    ])
    # The report's own section lists the inbox too.
    result.stdout.fnmatch_lines(["*mailsac inbox*", "*mailsac inbox test-*@example.test "
                                 "(newest first):*", "*'Welcome to Acme'*"])


def test_plugin_starts_no_server_unless_its_fixtures_are_used(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from mailsac import testing

        def refuse(self, timeout=0):
            raise AssertionError("a server was started")

        testing.LocalService.start = refuse
    """)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # ...and the same session would have started one for a test that asks for it.
    pytester.makepyfile(test_wants="def test_wants(mailsac_server):\n    pass\n")
    wanted = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_wants.py")
    wanted.assert_outcomes(errors=1)
    wanted.stdout.fnmatch_lines(["*a server was started*"])


def test_external_server_misconfigurations_are_explained(pytester: pytest.Pytester,
                                                         server: ServerHandle) -> None:
    pytester.makepyfile(test_x="def test_x(mailsac_inbox):\n    pass\n")
    no_key = pytester.runpytest_subprocess("--mailsac-url", server.http_url,
                                           "-p", "no:cacheprovider")
    no_key.assert_outcomes(errors=1)
    no_key.stdout.fnmatch_lines(["*needs --mailsac-key (or MAILSAC_KEY)*"])
    bad_key = pytester.runpytest_subprocess("--mailsac-url", server.http_url,
                                            "--mailsac-key", "k_nope", "-p", "no:cacheprovider")
    bad_key.assert_outcomes(errors=1)
    bad_key.stdout.fnmatch_lines(["*is not usable with the given key: 401*"])


@pytest.mark.slow
def test_plugin_runs_a_throwaway_server_for_the_session(pytester: pytest.Pytester) -> None:
    url_file = pytester.path / "url.txt"
    pytester.makepyfile(test_own=f"""
        def test_one(mailsac_server, mailsac_inbox):
            assert mailsac_server.local is not None          # started by the plugin
            with open({str(url_file)!r}, "w") as f:
                f.write(mailsac_server.url)
            mailsac_server.send(mailsac_inbox.email, subject="Hi from the throwaway")
            assert mailsac_inbox.wait(subject="throwaway", timeout=60).sender

        def test_two(mailsac_server, mailsac_inbox):
            with open({str(url_file)!r}) as f:
                assert f.read() == mailsac_server.url        # one server per session
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)
    result.assert_outcomes(passed=2)
    url = url_file.read_text()
    with pytest.raises(httpx.TransportError):  # stopped at the end of the session
        httpx.get(url + "/healthz", timeout=5)
