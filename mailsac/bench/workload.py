"""Deterministic, realistic test mail: text + HTML with links, some with attachments.

Message ``i`` of a :class:`Workload` is a pure function of the workload's parameters, so
the flood process, the verifier and the tests all rebuild the same bytes without passing
them around. Bodies come from a small pool of templates per size (built once, dot-stuffed
once); each message gets its own header block with a unique token in the Subject and
Message-ID, a recipient inbox and a sender from many distinct organisational domains.
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

KIB = 1024
MIB = 1024 * KIB

RECIPIENT_DOMAINS = ("bench.test", "qa.bench.test", "ci.example.test", "staging.example.test")
TOKEN_RE = re.compile(r"\[bench ([0-9a-z]+-[0-9]+)\]")
HEADER_ESTIMATE = 330  # typical length of our per-message header block

_WORDS = (
    "account activity address amount and any are as at available balance below before "
    "billing by can change check click code confirm continue could customer date delivery "
    "details did each email enter expires find first for free from get has have help here "
    "how if in information invoice is it item just last link log make may message more "
    "new next no not now number of on once only or order our out over password payment "
    "please privacy recent receipt request reset review secure security see sent service "
    "shipping sign since so team terms thank that the this time to today track two update "
    "us use verify view was we week welcome were what when will with within you your"
).split()
_NAMES = ("Ada", "Ben", "Chloe", "Dmitri", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas",
          "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara")
_SENDERS = ("noreply", "notifications", "billing", "support", "alerts", "news", "hello")
_BRANDS = ("shop", "bank", "cloud", "travel", "news", "social", "games", "health", "learn")
_FILES = (("application/pdf", "invoice-{n}.pdf"), ("image/jpeg", "photo-{n}.jpg"),
          ("application/zip", "report-{n}.zip"), ("text/csv", "export-{n}.csv"))


def parse_size(text: str) -> int:
    """``"4k"`` → 4096, ``"200KB"`` → 204800, ``"20m"`` → 20 MiB, ``"512"`` → 512 bytes."""
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": KIB, "m": MIB, "g": 1024 * MIB}.get(raw[-1:], 1)
    number = raw[:-1] if scale != 1 else raw
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 4k, 200k, 20m)") from None
    if value < 512:
        raise ValueError(f"message size {text!r} is too small (at least 512 bytes)")
    return value


def format_size(size: float) -> str:
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size:.0f} B"


@dataclass(frozen=True)
class SizeMix:
    """Message sizes with weights, e.g. ``"4k:70,16k:20,128k:10"`` (weights need not sum)."""

    entries: tuple[tuple[int, float], ...]

    @classmethod
    def parse(cls, text: str) -> SizeMix:
        entries: list[tuple[int, float]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            size, _, weight = part.replace("=", ":").partition(":")
            w = float(weight) if weight else 1.0
            if w <= 0:
                raise ValueError(f"weight of {size!r} must be positive")
            entries.append((parse_size(size), w))
        if not entries:
            raise ValueError("empty size mix")
        return cls(tuple(entries))

    def pick(self, rnd: random.Random) -> int:
        if len(self.entries) == 1:
            return self.entries[0][0]
        sizes = [s for s, _ in self.entries]
        return rnd.choices(sizes, weights=[w for _, w in self.entries])[0]

    @property
    def largest(self) -> int:
        return max(s for s, _ in self.entries)

    @property
    def mean(self) -> float:
        total = sum(w for _, w in self.entries)
        return sum(s * w for s, w in self.entries) / total

    def describe(self) -> str:
        total = sum(w for _, w in self.entries)
        if len(self.entries) == 1:
            return format_size(self.entries[0][0])
        return ", ".join(f"{format_size(s)} {100 * w / total:.0f}%" for s, w in self.entries)


@dataclass(frozen=True)
class Template:
    content_type: bytes  # the Content-Type header line, CRLF-terminated
    body: bytes  # everything after the header block; CRLF line ends, ends with CRLF


@dataclass(frozen=True)
class OutMessage:
    index: int
    token: str
    mail_from: str
    rcpt: str
    header: bytes
    body: bytes

    @property
    def size(self) -> int:
        return len(self.header) + len(self.body)

    @property
    def raw(self) -> bytes:
        return self.header + self.body


def _words(rnd: random.Random, length: int) -> str:
    """Space-separated words of exactly ``length`` characters (no line breaks)."""
    out: list[str] = []
    used = 0
    while used < length:
        word = rnd.choice(_WORDS)
        out.append(word)
        used += len(word) + 1
    text = " ".join(out)[:length]
    return text[:-1] + "." if text.endswith(" ") else text


def _lines(text_len: int, rnd: random.Random, width: int = 72) -> bytes:
    """About ``text_len`` bytes of wrapped prose, CRLF line ends; never starts a line with '.'."""
    lines: list[str] = []
    used = 0
    while used < text_len:
        n = min(width, text_len - used - 2)
        if n <= 0:
            break
        lines.append(_words(rnd, n))
        used += n + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def _link(rnd: random.Random) -> str:
    brand = rnd.choice(_BRANDS)
    return (f"https://{brand}{rnd.randrange(500)}.example/{rnd.choice(_WORDS)}/"
            f"{rnd.getrandbits(32):08x}?utm_source=mail&id={rnd.getrandbits(24)}")


def _text_part(rnd: random.Random, size: int) -> bytes:
    intro = f"Hello {rnd.choice(_NAMES)},\r\n\r\nSee {_link(rnd)} for details.\r\n\r\n"
    body = intro.encode()
    return body + _lines(max(0, size - len(body)), rnd)


def _html_part(rnd: random.Random, size: int) -> bytes:
    head = "<html><head><meta charset=\"utf-8\"></head><body>\r\n"
    tail = "</body></html>\r\n"
    first = f"<p><a href=\"{_link(rnd)}\">View it in your browser</a></p>\r\n"
    parts = [head, first]
    used = len(head) + len(first) + len(tail)
    links = 1
    while used < size:
        room = size - used
        if links < 50 and room > 300 and rnd.random() < 0.5:
            para = f"<p><a href=\"{_link(rnd)}\">{_words(rnd, 24)}</a></p>\r\n"
            links += 1
        else:
            para = f"<p>{_words(rnd, max(1, min(room, 300) - 9))}</p>\r\n"
        parts.append(para)
        used += len(para)
    parts.append(tail)
    return "".join(parts).encode()


def _base64_part(rnd: random.Random, size: int) -> bytes:
    """Base64 of random bytes, 76-char lines, about ``size`` bytes encoded."""
    raw_len = max(3, (size * 76 // 78) * 3 // 4)
    encoded = base64.b64encode(rnd.randbytes(raw_len))
    return b"\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76)) + b"\r\n"


def build_template(rnd: random.Random, body_size: int, attachment: bool) -> Template:
    """A multipart body of about ``body_size`` bytes (two passes to hit the size)."""
    mixed = f"=_mix_{rnd.getrandbits(48):012x}"
    alt = f"=_alt_{rnd.getrandbits(48):012x}"
    kind, name = rnd.choice(_FILES)
    filename = name.format(n=rnd.randrange(10_000))

    def assemble(text: bytes, html: bytes, payload: bytes) -> bytes:
        parts = [
            f"This is a multi-part message in MIME format.\r\n\r\n--{mixed}\r\n"
            f"Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n"
            f"--{alt}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n".encode(), text,
            f"--{alt}\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n".encode(), html, f"--{alt}--\r\n".encode(),
        ]
        if attachment:
            parts += [f"--{mixed}\r\nContent-Type: {kind}; name=\"{filename}\"\r\n"
                      f"Content-Disposition: attachment; filename=\"{filename}\"\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n".encode(), payload]
        parts.append(f"--{mixed}--\r\n".encode())
        return b"".join(parts)

    room = max(200, body_size - 700)
    if attachment:
        text_size = max(300, min(room // 10, 16 * KIB))
        html_size = max(400, min(room // 6, 48 * KIB))
        payload_size = max(100, room - text_size - html_size)
    else:
        text_size, html_size, payload_size = max(300, room * 2 // 5), max(400, room * 3 // 5), 0
    seeds = (rnd.random(), rnd.random(), rnd.random())
    for _ in range(2):  # measure the skeleton's overhead, then correct the largest part
        text = _text_part(random.Random(seeds[0]), text_size)
        html = _html_part(random.Random(seeds[1]), html_size)
        payload = _base64_part(random.Random(seeds[2]), payload_size) if attachment else b""
        deficit = body_size - len(assemble(text, html, payload))
        if attachment:
            payload_size = max(100, payload_size + deficit)
        else:
            text_size = max(300, text_size + deficit)
    body = assemble(text, html, payload).replace(b"\r\n.", b"\r\n..")  # dot-stuffing (none)
    content_type = f"Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n".encode()
    return Template(content_type, body)


def default_inboxes(count: int) -> int:
    """About ten messages per inbox (one list call with limit=1000 covers any inbox)."""
    return max(1, min(5000, count // 10))


@dataclass
class Workload:
    """``count`` messages of run ``run_id``; message ``i`` is always the same bytes."""

    run_id: str
    count: int
    sizes: SizeMix
    inboxes: int = 0  # 0: default_inboxes(count)
    sender_orgs: int = 1000
    attachment_ratio: float = 0.2
    seed: int = 0
    _templates: dict[tuple[int, bool, int], Template] = field(
        default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.run_id.isalnum() or self.run_id != self.run_id.lower():
            raise ValueError("run_id must be lowercase alphanumeric")
        if self.inboxes <= 0:
            self.inboxes = default_inboxes(self.count)
        self.date = format_datetime(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))

    def __getstate__(self) -> dict[str, object]:  # templates are rebuilt, not pickled
        state = dict(self.__dict__)
        state["_templates"] = {}
        return state

    def variants(self, size: int) -> int:
        return max(1, min(8, 48 * MIB // size))

    def template(self, size: int, attachment: bool, variant: int) -> Template:
        key = (size, attachment, variant)
        found = self._templates.get(key)
        if found is None:
            rnd = random.Random(f"{self.seed}:{size}:{attachment}:{variant}")
            found = build_template(rnd, size - HEADER_ESTIMATE, attachment)
            self._templates[key] = found
        return found

    def prepare(self) -> None:
        """Build every template up front (so the flood measures sending, not building)."""
        for size, _ in self.sizes.entries:
            if self._forced_attachment(size):
                kinds = [True]
            else:
                kinds = [False, True] if self.attachment_ratio > 0 else [False]
            for variant in range(self.variants(size)):
                for attachment in kinds:
                    self.template(size, attachment, variant)

    def _forced_attachment(self, size: int) -> bool:
        """Messages of a megabyte and more are attachments in real life."""
        return size >= MIB or self.attachment_ratio >= 1.0

    def token(self, i: int) -> str:
        return f"{self.run_id}-{i}"

    def inbox(self, i: int) -> str:
        k = i % self.inboxes
        return f"b{self.run_id}x{k}@{RECIPIENT_DOMAINS[k % len(RECIPIENT_DOMAINS)]}"

    def sender(self, i: int) -> str:
        org = (i * 7919) % self.sender_orgs
        return f"{_SENDERS[i % len(_SENDERS)]}@mail.{_BRANDS[org % len(_BRANDS)]}{org}.example"

    def message(self, i: int) -> OutMessage:
        if not 0 <= i < self.count:
            raise IndexError(i)
        rnd = random.Random(self.seed * 1_000_003 + i)
        size = self.sizes.pick(rnd)
        attachment = self._forced_attachment(size) or rnd.random() < self.attachment_ratio
        template = self.template(size, attachment, rnd.randrange(self.variants(size)))
        token, sender, rcpt = self.token(i), self.sender(i), self.inbox(i)
        subject = f"{_words(rnd, rnd.randrange(12, 40)).capitalize()} [bench {token}]"
        header = (
            f"From: {rnd.choice(_NAMES)} <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
            f"Date: {self.date}\r\nMessage-ID: <{token}.{self.seed}@{sender.split('@')[1]}>\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode() + template.content_type + b"\r\n"
        return OutMessage(i, token, sender, rcpt, header, template.body)

    def by_inbox(self, indices: list[int]) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = {}
        for i in indices:
            grouped.setdefault(self.inbox(i), []).append(i)
        return grouped
