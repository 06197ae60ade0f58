"""What a failure-injection rule is, and the validation of one sent through the API.

A rule makes the SMTP server misbehave on purpose at one stage of a session:

* ``connect`` (instead of the banner), ``mail`` (MAIL FROM), ``rcpt`` (RCPT TO) or ``data``
  (the reply to the end of the message: the message is then not stored);
* ``reply`` with a 4xx/5xx code and text, ``delay`` the normal reply by ``delaySeconds``,
  or ``drop`` the connection without a reply;
* with a ``probability`` per attempt and/or for the next ``times`` firings, until it expires.

Which stages a scope may use follows from who the rule belongs to: the recipient is known
only from RCPT on, so address and domain rules act at ``rcpt`` or ``data``; and since one
session may carry other people's mail, an address or domain rule may cut the connection
(``drop``, code 421) only at ``data``, where it fires only if it covers every recipient.
Global (operator) rules may use every stage and action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailsac.errors import InvalidRequest

SCOPES = ("address", "domain", "global")
STAGES = ("connect", "mail", "rcpt", "data")
ACTIONS = ("reply", "delay", "drop")
#: Reply codes a rule may send (RFC 5321 §4.2.2/§4.2.3, RFC 7504 521).
CODES = frozenset({421, 450, 451, 452, 454, 455, 500, 501, 502, 503, 504, 521, 550, 551,
                   552, 553, 554, 555})
CONNECT_CODES = frozenset({421, 554})  # what RFC 5321 §3.1/§3.8 allows instead of a greeting
MAX_MESSAGE = 200  # characters of reply text
MAX_DELAY = 60.0  # seconds
MAX_TIMES = 10_000
DEFAULT_EXPIRES = 3600  # seconds
MAX_EXPIRES = 7 * 24 * 3600
MAX_RULES_PER_TARGET = 20  # live rules on one address or domain
MAX_RULES_PER_ACCOUNT = 200  # live address and domain rules of one account
MAX_GLOBAL_RULES = 50
FIELDS = frozenset({"stage", "action", "code", "message", "delaySeconds", "probability",
                    "times", "expiresInSeconds", "_mailsacKey"})
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_ENHANCED = re.compile(r"([245])\.\d{1,3}\.\d{1,3} ")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A validated rule request (before it has an id and a scope)."""

    stage: str
    action: str
    code: int | None
    message: str | None
    delay_seconds: float | None
    probability: float | None
    times: int | None
    expires_in: int


@dataclass(slots=True)
class Rule:
    """A stored rule. ``times_left`` (None: unlimited) and ``fired`` change as it fires."""

    id: str
    account_id: str
    scope: str
    target: str | None
    stage: str
    action: str
    code: int | None
    message: str | None
    delay_seconds: float | None
    probability: float | None
    times_left: int | None
    fired: int
    created_at: datetime
    expires_at: datetime
    expires: float = 0.0  # expires_at as a time.time() value, for the hot path

    def __post_init__(self) -> None:
        self.expires = self.expires_at.timestamp()

    def reply_text(self) -> str:
        """The SMTP reply line of a ``reply`` rule, with an enhanced status code (RFC 3463;
        the server offers ENHANCEDSTATUSCODES): the one the text starts with, else X.0.0."""
        code = self.code or 451
        text = self.message or f"Failure injected by chaos rule {self.id}"
        found = _ENHANCED.match(text + " ")
        if found is None or found.group(1) != str(code)[0]:
            text = f"{code // 100}.0.0 {text}"
        return f"{code} {text}"


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number")
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return value


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...],
            default: str | None = None) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}")
    assert isinstance(value, str)
    return value


def parse_rule(body: dict[str, Any], scope: str) -> RuleSpec:
    """Validate a POST body for a rule of ``scope``; InvalidRequest (400) says what is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}; a rule has "
                             f"{', '.join(sorted(FIELDS - {'_mailsacKey'}))}")
    stage = _choice(body, "stage", STAGES)
    action = _choice(body, "action", ACTIONS, "reply")
    code = _integer(body, "code", 100, 599)
    message = body.get("message")
    delay = _number(body, "delaySeconds")
    if action == "reply":
        if code is None or code not in CODES:
            raise InvalidRequest(f"code must be one of {', '.join(map(str, sorted(CODES)))}")
        if stage == "connect" and code not in CONNECT_CODES:
            raise InvalidRequest("at the connect stage code must be 421 or 554 (the codes "
                                 "RFC 5321 allows instead of the greeting)")
        if message is not None and (
                not isinstance(message, str) or not message.strip()
                or len(message) > MAX_MESSAGE or not _PRINTABLE.fullmatch(message)):
            raise InvalidRequest(f"message must be 1-{MAX_MESSAGE} printable ASCII characters")
    else:
        if code is not None or message is not None:
            raise InvalidRequest("code and message apply only to action reply")
    if action == "delay":
        if delay is None or not 0 < delay <= MAX_DELAY:
            raise InvalidRequest(f"delaySeconds must be a number above 0 and at most "
                                 f"{MAX_DELAY:g}")
    elif delay is not None:
        raise InvalidRequest("delaySeconds applies only to action delay")
    probability = _number(body, "probability")
    if probability is not None and not 0.0 <= probability <= 1.0:
        raise InvalidRequest("probability must be a number from 0 to 1 (or null: always)")
    times = _integer(body, "times", 1, MAX_TIMES)
    expires = _integer(body, "expiresInSeconds", 1, MAX_EXPIRES)
    if scope != "global":
        if stage in ("connect", "mail"):
            raise InvalidRequest(f"an {scope} rule can act only at the rcpt or data stage "
                                 f"(the recipient is not known at {stage}); connect and mail "
                                 f"rules are global (operator only)")
        if stage == "rcpt" and (action == "drop" or code == 421):
            raise InvalidRequest(f"an {scope} rule cannot close the connection at rcpt (other "
                                 f"recipients of the session would be cut off): use the data "
                                 f"stage for drop and 421")
    return RuleSpec(stage, action, code, message.strip() if isinstance(message, str) else None,
                    delay, probability, times, expires or DEFAULT_EXPIRES)
