"""Robust parsing of raw RFC 5322 messages into the data the Mailsac API serves.

Built on the stdlib ``email`` package with a compat32-derived policy (header values are
kept raw and decoded here), which is ~4x faster than mail-parser and ~15x faster than
``email.policy.default`` on typical mail.  Nothing in this module raises on any input:
every decoding step has a lenient fallback, and malformed input is counted in
``ParsedMessage.defects`` instead.
"""

from __future__ import annotations

import email
import email.parser
import email.utils
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.policy import Compat32

from mailsac.mime.decode import (
    decode_bytes,
    decode_rfc2047,
    decode_transfer,
    to_bytes,
    unfold,
    unsurrogate,
)
from mailsac.mime.links import extract_links
from mailsac.mime.nesting import nesting_cut

__all__ = [
    "Address",
    "Attachment",
    "ParsedMessage",
    "find_attachment",
    "headers_json",
    "headers_ordered",
    "headers_plain",
    "parse_message",
]

MAX_DEPTH = 20  # multipart nesting levels walked
MAX_PARTS = 2000  # MIME parts walked per message
MAX_ADDRESS_HEADER = 64 * 1024  # characters of an address field handed to getaddresses
MAX_HEADER_FIELDS = 1000  # header fields kept in the parse (API, viewer, payloads)
MAX_ADDRESSES = 200  # addresses kept per field (stored with every recipient's row)
MAX_NAME_CHARS = 998  # a display name or address longer than a header line is cut
MAX_ADDRESS_CHARS = 16 * 1024  # characters of names and addresses kept per field
MAX_PARAM_HEADER = 8 * 1024  # characters of Content-Type / -Disposition parsed for parameters
MAX_PARAMS = 100  # ";"-separated parameters of those headers parsed

# ---------------------------------------------------------------------------------------
# Public data model


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    address: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address}


@dataclass(frozen=True, slots=True)
class Attachment:
    checksum: str
    content_type: str
    file_name: str | None
    content_disposition: str | None
    content_id: str | None
    length: int
    transfer_encoding: str | None
    data: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "checksum": self.checksum,
            "contentType": self.content_type,
            "fileName": self.file_name,
            "contentDisposition": self.content_disposition,
            "contentId": self.content_id,
            "length": self.length,
            "transferEncoding": self.transfer_encoding,
        }


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    headers: list[tuple[str, str]]
    from_: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    subject: str
    message_id: str | None
    text: str | None
    html: str | None
    attachments: list[Attachment]
    links: list[str]
    defects: int

    def approx_size(self) -> int:
        """Rough number of bytes held by this object (for a byte-bounded cache)."""
        size = 600 + len(self.subject) + len(self.message_id or "")
        size += len(self.text or "") + len(self.html or "")
        size += sum(len(k) + len(v) + 120 for k, v in self.headers)
        for group in (self.from_, self.to, self.cc, self.bcc):
            size += sum(len(a.name) + len(a.address) + 140 for a in group)
        for att in self.attachments:
            size += len(att.data) + len(att.file_name or "") + len(att.content_id or "") + 400
        size += sum(len(link) + 60 for link in self.links)
        return size


def headers_json(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(name.lower(), []).append(value)
    return result


def headers_ordered(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def headers_plain(raw: bytes) -> str:
    """The raw header block (up to, not including, the first empty line), as written."""
    raw = bytes(raw)
    if raw.startswith((b"\r\n", b"\n")):
        return ""
    m = _BLANK_LINE.search(raw)
    if m is not None:
        raw = raw[: m.start() + (2 if raw[m.start() : m.start() + 1] == b"\r" else 1)]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_ADDR_SPLIT = re.compile(r"[\s<>,;:\"()\[\]]+")


def _parse_addresses(values: Sequence[str]) -> tuple[list[Address], int]:
    if not values:
        return [], 0
    defects = 0
    field = ", ".join(values)
    if len(field) > MAX_ADDRESS_HEADER:
        cut = field.rfind(",", 0, MAX_ADDRESS_HEADER)
        field = field[: cut if cut > 0 else MAX_ADDRESS_HEADER]
        defects += 1
    try:
        pairs = email.utils.getaddresses([field])
    except Exception:  # RecursionError on nested comments / groups, ...
        defects += 1
        pairs = [("", tok) for tok in _ADDR_SPLIT.split(field) if _is_addr_spec(tok)]
    result: list[Address] = []
    kept = 0
    for name, addr in pairs:
        name, addr = decode_rfc2047(name.strip()).strip(), addr.strip()
        name, addr = name[:MAX_NAME_CHARS], addr[:MAX_NAME_CHARS]
        kept += len(name) + len(addr)
        if len(result) >= MAX_ADDRESSES or kept > MAX_ADDRESS_CHARS:
            defects += 1
            break
        if name or addr:
            result.append(Address(name=name, address=addr))
    return result, defects


def _is_addr_spec(token: str) -> bool:
    local, at, domain = token.rpartition("@")
    return bool(local and at and domain)


# ---------------------------------------------------------------------------------------
# MIME tree walking


class _RawPolicy(Compat32):
    """compat32, but header values are returned raw (never wrapped in ``Header`` objects,
    which would lossily replace 8-bit bytes); decoding happens in this module."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        if name.lower() in _PARAM_HEADERS:
            return _bound_params(value)
        return value


_PARAM_HEADERS = frozenset({"content-type", "content-disposition"})


def _bound_params(value: str) -> str:
    """At most :data:`MAX_PARAM_HEADER` characters and :data:`MAX_PARAMS` parameters.

    The stdlib parameter parser (``get_param``, ``get_filename``, and ``get_boundary``
    inside the parser itself) copies the rest of the value for every parameter and
    re-counts quotes from its start for every ";": quadratic without these bounds.
    """
    value = value[:MAX_PARAM_HEADER]
    cut = -1
    for _ in range(MAX_PARAMS):
        cut = value.find(";", cut + 1)
        if cut < 0:
            return value
    return value[:cut]


_POLICY = _RawPolicy()
# (The optional quote and the white space after it form one group: "\s*["']?\s*" would
# try every split of a run of white space between its two \s*, quadratic in the run.)
_META_CHARSET = re.compile(
    rb"<meta[^>]{0,300}?charset\s*=\s*(?:[\"']\s*)?([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE
)


def _header(part: Message, name: str) -> str | None:
    try:
        value = part.get(name)
    except Exception:
        return None
    return None if value is None else unfold(unsurrogate(str(value))).strip()


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if name is None:
        return None
    name = decode_rfc2047(unfold(unsurrogate(str(name)))).strip()
    return name or None


def _disposition(part: Message) -> str | None:
    value = _header(part, "content-disposition")
    if not value:
        return None
    return value.partition(";")[0].strip().strip("\"'").lower() or None


def _charset(part: Message) -> str | None:
    try:
        value = part.get_param("charset")
    except Exception:
        return None
    if isinstance(value, tuple):
        value = value[2]
    if not isinstance(value, str) or not value.strip():
        return None
    return unsurrogate(value)


class _Walker:
    def __init__(self) -> None:
        self.text: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []
        self.defects = 0
        self.parts = 0

    def walk(self, part: Message, depth: int) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.defects += self.parts == MAX_PARTS + 1  # count the overflow once
            return
        if depth > MAX_DEPTH:
            self.defects += 1
            return
        self.defects += len(getattr(part, "defects", ()))
        # The raw payload: get_payload() would lossily decode 8-bit data with "replace".
        payload: object = getattr(part, "_payload", None)
        ctype = _content_type(part)
        if isinstance(payload, list):
            if ctype.startswith("multipart/"):
                for sub in payload:
                    if isinstance(sub, Message):
                        self.walk(sub, depth + 1)
                return
            self._add_attachment(part, ctype, _flatten(payload))  # message/rfc822 & co.
            return
        if not isinstance(payload, (str, bytes)):
            self.defects += 1
            return
        cte = _header(part, "content-transfer-encoding")
        cte = cte.lower() if cte else None
        data, bad = decode_transfer(payload, cte)
        self.defects += bad
        disposition = _disposition(part)
        file_name = _filename(part)
        if file_name is None and disposition in (None, "inline"):
            if ctype.startswith("multipart/"):  # multipart without a usable boundary
                if not data.strip():
                    return  # (e.g. the innermost level left by a nesting cut): no body
                ctype = "text/plain"
            if ctype in ("text/plain", "text/html"):
                self._add_body(part, ctype, data)
                return
        self._add_attachment(part, ctype, data, disposition, file_name, cte)

    def _add_body(self, part: Message, ctype: str, data: bytes) -> None:
        is_html = ctype == "text/html"
        if (self.html if is_html else self.text) is not None:
            return  # only the first body part of each kind is used
        charset = _charset(part)
        if charset is None and is_html:
            m = _META_CHARSET.search(data, 0, 4096)
            charset = m.group(1).decode("ascii") if m else None
        text, bad = decode_bytes(data, charset)
        self.defects += bad
        text = text.replace("\r\n", "\n")
        if is_html:
            self.html = text
        else:
            self.text = text

    def _add_attachment(
        self,
        part: Message,
        ctype: str,
        data: bytes,
        disposition: str | None = None,
        file_name: str | None = None,
        cte: str | None = None,
    ) -> None:
        if not ctype.startswith("multipart/") and disposition is None:
            disposition = _disposition(part)
        if file_name is None:
            file_name = _filename(part)
        cid = _header(part, "content-id")
        cid = cid.strip().strip("<>").strip() if cid else None
        if cte is None:
            cte = _header(part, "content-transfer-encoding")
            cte = cte.lower() if cte else None
        self.attachments.append(
            Attachment(
                checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                content_type=ctype,
                file_name=file_name,
                content_disposition=disposition,
                content_id=cid or None,
                length=len(data),
                transfer_encoding=cte,
                data=data,
            )
        )


def _flatten(payload: Sequence[object]) -> bytes:
    chunks: list[bytes] = []
    for sub in payload:
        if not isinstance(sub, Message):
            continue
        try:
            chunks.append(sub.as_bytes(policy=_POLICY.clone(linesep="\r\n")))
        except Exception:
            try:
                chunks.append(to_bytes(str(getattr(sub, "_payload", ""))))
            except Exception:
                pass
    return b"\r\n".join(chunks)


def _parse_tree(raw: bytes) -> tuple[Message, int]:
    try:
        return email.message_from_bytes(raw, policy=_POLICY), 0
    except Exception:  # RecursionError on absurdly nested multiparts, ...
        parser = email.parser.BytesParser(policy=_POLICY)
        return parser.parsebytes(raw, headersonly=True), 1


def _parse(raw: bytes) -> ParsedMessage:
    cut = nesting_cut(raw, MAX_DEPTH)
    if cut is not None:  # nested deeper than is walked: see mailsac.mime.nesting
        raw = raw[:cut]
    msg, defects = _parse_tree(raw)
    defects += cut is not None
    raw_headers = [(name, unfold(unsurrogate(value))) for name, value in msg.raw_items()]
    if len(raw_headers) > MAX_HEADER_FIELDS:  # the raw source still has them all
        raw_headers = raw_headers[:MAX_HEADER_FIELDS]
        defects += 1
    headers = [(name, decode_rfc2047(value)) for name, value in raw_headers]
    by_name: dict[str, list[str]] = {}
    for name, value in raw_headers:
        by_name.setdefault(name.lower(), []).append(value)
    decoded = headers_json(headers)

    groups: list[list[Address]] = []
    for field in ("from", "to", "cc", "bcc"):
        addrs, bad = _parse_addresses(by_name.get(field, []))
        groups.append(addrs)
        defects += bad

    message_id: str | None = None
    for mid in decoded.get("message-id", [])[:1]:
        mid = mid.strip()
        lt, gt = mid.find("<"), mid.find(">")
        if 0 <= lt < gt:
            mid = mid[lt + 1 : gt]
        message_id = mid.strip().strip("<>").strip() or None

    walker = _Walker()
    walker.walk(msg, 0)
    return ParsedMessage(
        headers=headers,
        from_=groups[0],
        to=groups[1],
        cc=groups[2],
        bcc=groups[3],
        subject=decoded.get("subject", [""])[0].strip(),
        message_id=message_id,
        text=walker.text,
        html=walker.html,
        attachments=walker.attachments,
        links=extract_links(walker.text, walker.html),
        defects=defects + walker.defects,
    )


def _fallback(raw: bytes) -> ParsedMessage:
    text = raw.decode("latin-1")
    return ParsedMessage(
        headers=[], from_=[], to=[], cc=[], bcc=[], subject="", message_id=None,
        text=text, html=None, attachments=[], links=[], defects=1,
    )  # fmt: skip


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw message bytes. Never raises (except MemoryError and the like)."""
    raw = bytes(raw)
    try:
        return _parse(raw)
    except Exception:  # last-resort safety net; no known input reaches this
        return _fallback(raw)


def find_attachment(msg: ParsedMessage, ident: str) -> Attachment | None:
    """Look an attachment up by md5 checksum, then Content-ID (with or without <>),
    then file name."""
    key = ident.strip()
    if not key:
        return None
    low = key.lower()
    for att in msg.attachments:
        if att.checksum == low:
            return att
    cid = key.strip("<>").strip()
    for att in msg.attachments:
        if att.content_id is not None and att.content_id == cid:
            return att
    for att in msg.attachments:
        if att.file_name == key:
            return att
    return None
