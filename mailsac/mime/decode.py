"""Lenient decoding primitives: charsets, transfer encodings, RFC 2047 header words.

Every function here accepts arbitrary input and never raises; problems are reported to the
caller as a boolean "had a problem" flag where it matters (counted as parse defects).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re

__all__ = [
    "b64decode_lenient",
    "decode_bytes",
    "decode_header_value",
    "decode_rfc2047",
    "decode_transfer",
    "to_bytes",
    "unfold",
    "unsurrogate",
]

# ---------------------------------------------------------------------------------------
# Charsets and byte decoding

_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "ansi_x3.4-1968": "ascii",
}
# Codecs that are "text encodings" to Python but must never be applied to mail content.
_BLOCKED_CODECS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "unicode_escape"}
)


@functools.lru_cache(maxsize=512)
def _resolve_charset(name: str) -> str | None:
    """Map a declared charset label to a Python codec name, or None if unusable."""
    label = name.strip().strip("\"'").strip().lower()[:64]
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except Exception:  # LookupError, ValueError (NUL), ...
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _BLOCKED_CODECS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode ``data`` by its declared charset; returns ``(text, had_problem)``.

    Known charset: strict, then UTF-8 strict, then the charset with replacement characters.
    Missing / us-ascii / unknown charset: UTF-8 strict, then windows-1252, then latin-1.
    """
    codec = _resolve_charset(charset) if charset else None
    problem = bool(charset) and codec is None
    if codec is not None and codec != "ascii":
        if codec == "iso8859-1":  # as in browsers: latin-1 labels get windows-1252 decoding
            try:
                return data.decode("cp1252"), problem
            except UnicodeDecodeError:
                pass
        try:
            return data.decode(codec), problem
        except Exception:
            pass
        if codec != "utf-8":
            try:
                return data.decode("utf-8"), True
            except UnicodeDecodeError:
                pass
        try:
            return data.decode(codec, "replace"), True
        except Exception:
            return data.decode("latin-1"), True
    if data.isascii():
        return data.decode("ascii"), problem
    for fallback in ("utf-8", "cp1252"):
        try:
            return data.decode(fallback), problem
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1"), True


def to_bytes(value: str) -> bytes:
    """Undo the ascii/surrogateescape decoding the email package applies to raw bytes."""
    return value.encode("utf-8", "surrogateescape")


def unsurrogate(value: str) -> str:
    if value.isascii():
        return value
    try:
        raw = to_bytes(value)
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return decode_bytes(raw, None)[0]


# ---------------------------------------------------------------------------------------
# Transfer encodings

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NOISE = bytes(c for c in range(256) if c not in _B64_ALPHABET)
_B64_HARMLESS = b" \t\r\n="


def b64decode_lenient(data: bytes) -> tuple[bytes, bool]:
    """Decode base64, skipping junk characters and repairing padding."""
    clean = data.translate(None, _B64_NOISE)
    bad = len(clean) != len(data.translate(None, _B64_HARMLESS))
    rem = len(clean) % 4
    if rem == 1:
        clean, bad = clean[:-1], True
    elif rem:
        clean += b"=" * (4 - rem)
    try:
        return binascii.a2b_base64(clean), bad
    except (binascii.Error, ValueError):
        return b"", True


def _uudecode(data: bytes) -> tuple[bytes, bool]:
    out = bytearray()
    bad = False
    started = False
    for line in data.splitlines():
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() == b"end":
            break
        if not line.strip():
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            try:  # some encoders pad lines with garbage; decode just the declared length
                out += binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3])
            except binascii.Error:
                bad = True
    return bytes(out), bad or not started


def decode_transfer(payload: str | bytes, cte: str | None) -> tuple[bytes, bool]:
    raw = payload if isinstance(payload, bytes) else to_bytes(payload)
    if cte == "base64":
        return b64decode_lenient(raw)
    if cte == "quoted-printable":
        return binascii.a2b_qp(raw), False
    if cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        return _uudecode(raw)
    return raw, False


# ---------------------------------------------------------------------------------------
# Headers

_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n[ \t]")
_CRLF = re.compile(r"[\r\n\x00]")  # never left in a decoded header (NUL breaks Postgres)


def _decode_word(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        return b64decode_lenient(text.encode("ascii", "ignore"))[0]
    return binascii.a2b_qp(text.encode("utf-8", "replace"), header=True)


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded-words leniently (adjacent words of one charset are joined
    at the byte level so that split multi-byte characters survive)."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pending_charset = ""
    pos = 0
    last_was_word = False

    def flush() -> None:
        if pending:
            out.append(_CRLF.sub(" ", decode_bytes(bytes(pending), pending_charset)[0]))
            pending.clear()

    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if not (last_was_word and not gap.strip(" \t")):
            flush()
            out.append(gap)
        charset = m.group(1).lower()
        if charset != pending_charset:
            flush()
            pending_charset = charset
        pending += _decode_word(m.group(2), m.group(3))
        pos = m.end()
        last_was_word = True
    flush()
    out.append(value[pos:])
    return "".join(out)


def unfold(value: str) -> str:
    return _CRLF.sub("", _FOLD.sub(" ", value))


def decode_header_value(value: str) -> str:
    """Raw (possibly surrogate-escaped, folded) header value -> display string."""
    return decode_rfc2047(unfold(unsurrogate(value)))
