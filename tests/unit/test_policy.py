from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsac.errors import InvalidAddress
from mailsac.policy import domain_accepted, normalize_domain, normalize_inbox, parse_recipient


@pytest.mark.parametrize(
    ("address", "inbox", "original"),
    [
        ("jeff@x.test", "jeff@x.test", "jeff@x.test"),
        ("Jeff@X.Test", "jeff@x.test", "jeff@x.test"),
        ("jeff+123@x.test", "jeff@x.test", "jeff+123@x.test"),
        ("JEFF+Tag+More@x.test", "jeff@x.test", "jeff+tag+more@x.test"),
        ("<jeff@x.test>", "jeff@x.test", "jeff@x.test"),
        ("first.last@sub.example.co.uk", "first.last@sub.example.co.uk",
         "first.last@sub.example.co.uk"),
        ("+only@x.test", "+only@x.test", "+only@x.test"),
        ("user@x.test.", "user@x.test", "user@x.test"),
        ("josé@exämple.test", "josé@exämple.test", "josé@exämple.test"),
        ("root@localhost", "root@localhost", "root@localhost"),
        ("a@[127.0.0.1]", "a@[127.0.0.1]", "a@[127.0.0.1]"),
    ],
)
def test_valid_addresses_normalise(address: str, inbox: str, original: str) -> None:
    recipient = parse_recipient(address)
    assert recipient.inbox == inbox
    assert recipient.original == original
    assert normalize_inbox(address) == inbox


@pytest.mark.parametrize(
    ("address", "reason_part"),
    [
        ("", "empty"),
        ("no-at-sign", "looks like"),
        ("@x.test", "looks like"),
        ("user@", "looks like"),
        ("us er@x.test", "spaces"),
        ("user@nodot", "dot"),
        ("a..b@x.test", "local part"),
        (".a@x.test", "local part"),
        ("a\x00b@x.test", "control"),
        ("user@-bad.test", "domain label"),
        ("user@bad_label.test", "domain label"),
        ("x" * 65 + "@x.test", "local part is longer"),
        ("a@" + "b" * 250 + ".test", "longer than 254"),
        ('"quoted"@x.test', "local part"),
    ],
)
def test_invalid_addresses_give_a_reason(address: str, reason_part: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_recipient(address)
    assert reason_part in info.value.reason


@pytest.mark.parametrize(
    ("domain", "accepted", "expected"),
    [
        ("x.test", (), True),
        ("x.test", ("x.test",), True),
        ("y.test", ("x.test",), False),
        ("a.x.test", ("x.test",), False),
        ("a.x.test", ("*.x.test",), True),
        ("a.b.x.test", ("*.x.test",), True),
        ("x.test", ("*.x.test",), False),
    ],
)
def test_domain_accepted(domain: str, accepted: tuple[str, ...], expected: bool) -> None:
    assert domain_accepted(domain, frozenset(accepted)) is expected


@given(st.text(max_size=300))
def test_parse_recipient_never_crashes(text: str) -> None:
    try:
        recipient = parse_recipient(text)
    except InvalidAddress as exc:
        assert exc.reason
    else:
        assert "@" in recipient.inbox
        assert recipient.inbox == recipient.inbox.lower()
        assert len(recipient.original) <= 254
        # Normalisation is idempotent.
        assert parse_recipient(recipient.original).original == recipient.original


@given(
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True),
)
def test_tag_is_stripped_for_the_inbox(base: str, tag: str, domain: str) -> None:
    recipient = parse_recipient(f"{base}+{tag}@{domain}")
    assert recipient.inbox == f"{base}@{domain}"
    assert recipient.original == f"{base}+{tag}@{domain}"


def test_invalid_utf8_is_rejected() -> None:
    # aiosmtpd decodes command arguments with surrogateescape: b"\xff" arrives as "\udcff".
    with pytest.raises(InvalidAddress, match="UTF-8"):
        parse_recipient(b"\xff@x.test".decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize(("domain", "expected"), [
    ("Example.TEST", "example.test"), ("example.test.", "example.test"),
    ("[127.0.0.1]", "[127.0.0.1]"), ("localhost", "localhost"),
])
def test_domains_normalise_as_address_domains_do(domain: str, expected: str) -> None:
    assert normalize_domain(domain) == expected == parse_recipient(f"a@{domain}").domain


@pytest.mark.parametrize(("domain", "reason_part"), [
    ("nodots", "at least one dot"), ("a..b.test", "invalid domain label"),
    ("a@b.test", "without a name and @"), ("sp ace.test", "spaces"),
])
def test_invalid_domains_give_a_reason_naming_the_domain(domain: str, reason_part: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        normalize_domain(domain)
    assert reason_part in err.value.reason and err.value.address == domain
