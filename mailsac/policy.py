"""The one place that parses and normalises e-mail addresses.

Both the SMTP handler (``RCPT TO``) and the HTTP API (``{email}`` path parameters) call
:func:`parse_recipient`, so an inbox is named the same way everywhere:

* the whole address is case-folded (``Jeff@X.test`` and ``jeff@x.test`` are one inbox);
* ``+tag`` is stripped from the local part for the inbox name (``jeff+123@x.test`` is
  stored in ``jeff@x.test``), while ``original`` keeps what was written;
* syntax is checked against a pragmatic subset of RFC 5321 §4.1.2 / RFC 6531 (UTF-8 local
  parts are allowed, quoted local parts are not) and the lengths of RFC 5321 §4.5.3.1.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from mailsac.errors import InvalidAddress

MAX_ADDRESS_LENGTH = 254  # RFC 5321 §4.5.3.1.3 (path 256 minus the angle brackets)
MAX_LOCAL_LENGTH = 64  # RFC 5321 §4.5.3.1.1
MAX_LABEL_LENGTH = 63

# atext of RFC 5322 §3.2.3, plus any non-ASCII character (RFC 6531 SMTPUTF8).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_LOCAL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)")
_ADDRESS_LITERAL_RE = re.compile(r"\[(?:\d{1,3}\.){3}\d{1,3}\]|\[IPv6:[0-9a-f:.]+\]")


@dataclass(frozen=True, slots=True)
class Recipient:
    """A validated, normalised address.

    ``inbox`` is the mailbox the mail lands in; ``original`` is the address as written
    (case-folded, tag kept), which the API reports as ``originalInbox``.
    """

    local_part: str
    domain: str
    original: str

    @property
    def mailbox(self) -> str:
        """The local part with any ``+tag`` removed."""
        base, _, _ = self.local_part.partition("+")
        return base or self.local_part

    @property
    def inbox(self) -> str:
        return f"{self.mailbox}@{self.domain}"


def _check_domain(domain: str, address: str) -> None:
    if _ADDRESS_LITERAL_RE.fullmatch(domain):
        return
    labels = domain.split(".")
    if len(labels) < 2 and domain != "localhost":
        raise InvalidAddress(address, "the domain needs at least one dot (e.g. example.com)")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise InvalidAddress(address, f"invalid domain label {label!r}")


def parse_recipient(address: str) -> Recipient:
    """Validate and normalise ``address``; raise :class:`InvalidAddress` with a reason."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        raise InvalidAddress(address, "the address is empty")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(address, f"the address is longer than {MAX_ADDRESS_LENGTH} chars")
    if any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in text):
        raise InvalidAddress(address, "the address contains spaces or control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not valid UTF-8
        raise InvalidAddress(address, "the address is not valid UTF-8") from None
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidAddress(address, "an address looks like name@example.com")
    if len(local) > MAX_LOCAL_LENGTH:
        raise InvalidAddress(address, f"the local part is longer than {MAX_LOCAL_LENGTH} chars")
    if not _LOCAL_RE.fullmatch(local):
        raise InvalidAddress(address, "the local part has characters that are not allowed")
    local = local.lower()
    domain = domain.lower().rstrip(".")
    _check_domain(domain, address)
    return Recipient(local_part=local, domain=domain, original=f"{local}@{domain}")


def normalize_inbox(address: str) -> str:
    """The inbox name for ``address`` (raises :class:`InvalidAddress`)."""
    return parse_recipient(address).inbox


def normalize_domain(domain: str) -> str:
    """``domain`` as stored: lower case, no trailing dot, checked as the domain of an
    address is (raises :class:`InvalidAddress`, whose ``reason`` says what is wrong)."""
    if "@" in domain:
        raise InvalidAddress(domain, "give the domain alone, without a name and @")
    try:
        return parse_recipient("x@" + domain).domain
    except InvalidAddress as exc:
        raise InvalidAddress(domain, exc.reason) from None


def domain_accepted(domain: str, accepted: Collection[str]) -> bool:
    """True when ``accepted`` is empty (accept all) or lists ``domain`` or a parent of it.

    A listed ``example.com`` accepts ``example.com`` only; ``*.example.com`` accepts its
    sub-domains as well.
    """
    if not accepted:
        return True
    if domain in accepted:
        return True
    parts = domain.split(".")
    return any("*." + ".".join(parts[i:]) in accepted for i in range(1, len(parts)))
