"""The fast path of MAIL/RCPT address parsing agrees with aiosmtpd's full parser."""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from mailsac.smtp.server import MailsacSMTP


class _NoHandler:
    pass


def _parsers() -> tuple[Any, MailsacSMTP]:
    stock = SMTP(_NoHandler())
    ours = MailsacSMTP.__new__(MailsacSMTP)  # only _getaddr is used: no listener needed
    ours.local_part_limit = 0
    return stock, ours


CASES = [
    "<a@b.c>", " <a@b.c>", "<a@b.c> SIZE=100", "<a@b.c>  BODY=8BITMIME SMTPUTF8",
    "<A.B+c@Example.COM>", "<a@b.c> (comment)", "<a..b@c.d>", '<"q x"@c.d>', "<a@[1.2.3.4]>",
    "<>", "<a@b.c>x", "<a@-b.c>", "<user@localhost>", "<a@b.c>\tSIZE=1", "<ä@b.c>", "a@b.c",
    "<@route:a@b.c>", "<a@b.c", "", "<a b@c.d>", "<a@b..c>",
]


def _full(stock: Any, arg: str) -> tuple[str | None, str | None]:
    try:
        return stock._getaddr(arg)  # type: ignore[no-any-return]
    except Exception:  # aiosmtpd's parser crashes on some input
        return None, None


def test_known_cases_match_the_full_parser() -> None:
    stock, ours = _parsers()
    for arg in CASES:
        assert ours._getaddr(arg) == _full(stock, arg), arg


@given(st.text(alphabet="ab.@<>+-_ ()[]\"\tZ9=é", max_size=30))
def test_any_argument_matches_the_full_parser(arg: str) -> None:
    stock, ours = _parsers()
    assert ours._getaddr(arg) == _full(stock, arg)


def test_input_that_crashes_the_full_parser_is_a_syntax_error() -> None:
    _, ours = _parsers()
    for arg in ("<", '"', "<a@[", "a@["):
        assert ours._getaddr(arg) == (None, None), arg


def test_local_part_limit_applies_to_the_fast_path() -> None:
    stock, ours = _parsers()
    stock.local_part_limit = ours.local_part_limit = 5
    assert ours._getaddr("<abcdef@x.test>") == stock._getaddr("<abcdef@x.test>") == (None, None)
    assert ours._getaddr("<abc@x.test>") == ("abc@x.test", "")
