"""Feature extraction: a parsed message -> a set of namespaced string tokens.

Every feature is a token (``"w:viagra"``, ``"fd:example.com"``, ``"url:ip"``,
``"caps:3"``), so cheap structural signals go through the same Naive Bayes machinery
as words.  Tokens are counted once per message (Bernoulli-style document frequencies).

What is deliberately *not* a feature, so the model carries over to mail from other
years and senders: mailing-list headers (List-*, X-Mailing-List, X-BeenThere,
Precedence, Sender, Errors-To, ...), mailbox/filter artefacts (X-Spam-*, X-Keywords,
X-Status, Delivery-Date, Delivered-To), specific Received host names and software
versions.  Received lines contribute only generic shapes (hop count, "unknown" reverse
DNS, IP-literal HELO, dynamic-looking hosts, Date/Received clock skew).  HTML markup
markers (font/colour/table tags, image and link counts) were measured and dropped: in
this corpus legitimate mail is nearly all plain text, so they mostly taught "HTML =
spam" (5-fold AUC .9993 -> .9995 and cross-folder AUC .9897 -> .9929 without them).

Dropped for the same reason - they describe the mail software and people of the 2002
training corpus, not spam, and misfire on present-day short transactional mail:

* MIME plumbing: Content-Transfer-Encoding (``quoted-printable`` alone was +2.6 per
  message: 536 spam vs 86 ham in 2002, but nearly every present-day HTML or UTF-8 mail
  uses it), charset, Content-Type, "text + html alternative" and MIME-Version.  Only
  ``body:html`` (HTML with no text alternative) is kept;
* sender display-name words (``fn:alice``: one 2002 spam made every "Alice" +2.4) and
  "no display name" (``fn:none``: 2002 list mail nearly always had one, present-day
  automated senders rarely do); ``fn:has_addr`` (an address posing as a name) stays;
* the body-length bucket (``len:0``: 25 spam vs 5 ham, but most QA mail is one line).

Structural tokens (how a message is built: HTML tricks, link tricks, encodings,
obfuscation, sender consistency) come from :mod:`mailsac.spam.structure`; verdict tags of
earlier filters are removed from the subject first.  Together they took the cross-corpus
FNR (train SpamAssassin 2002, test CSDMC2010) from 39.6 % to 31.4 % before recalibration
(22.8 % after it, with these tokens counted twice: :func:`mailsac.spam.bayes.hash_tokens`).

Measured together with the scoring changes of :mod:`mailsac.spam.scoring` on the corpus
and on the hand-written present-day set in ``tests/data/spam/modern``; see
``benchmarks/spam_bench.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from mailsac.mime import ParsedMessage, html_to_text
from mailsac.spam import headers as hdr
from mailsac.spam import structure
from mailsac.spam.domains import is_ip, registrable_domain, tld

__all__ = ["MAX_TEXT", "body_tokens", "extract_tokens", "field_tokens"]

MAX_TEXT = 16_000  # characters of body text tokenized (bounds the cost of large messages)
MAX_LINKS = 60

# A word is what ``[\w$€£][\w$€£'’.%&-]*[\w%]|[\w$€£]`` finds, but that pattern is
# quadratic on runs without a final character ("$" * n: every "$" rescans the rest of the
# run). So whole runs are matched (one greedy class, no backtracking) and the word is the
# run up to its last [\w%] character; each "$€£" after it is a one-character word.
_WORD_RUN = re.compile(r"[\w$€£][\w$€£'’.%&-]*", re.UNICODE)
_WORD = re.compile(r"[\w$€£][\w$€£'’.%&-]*[\w%]|[\w$€£]", re.UNICODE)  # reference only
_NOT_FINAL = "$€£'’.&-"  # run characters that cannot end a word
_CURRENCY = frozenset("$€£")
_WORD_CHARS = re.compile(r"\w{3,}")  # maximal runs of 3+ word characters (see _letter_words)
_DIGITS = re.compile(r"^[\d.,-]+$")
_SCRIPT = (
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("han", re.compile(r"[\u4e00-\u9fff]")),
    ("hangul", re.compile(r"[\uac00-\ud7af]")),
    ("kana", re.compile(r"[\u3040-\u30ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
)
_EMAIL = re.compile(r"[\w.+=-]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
_AT_REST = re.compile(r"@\S*")  # from an "@" to the end of its whitespace-delimited word
_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://([^/?#]*)", re.I)
_SHORT_WORDS = frozenset({"re", "fw", "fwd"})


def bucket(n: float) -> int:
    """Logarithmic bucket of a non-negative count: 0, 1, 2-3, 4-7, ... -> 0, 1, 2, 3, ..."""
    return int(n).bit_length() if n > 0 else 0


def words_of(text: str) -> set[str]:
    """The distinct words of ``text`` (linear time; see ``_WORD_RUN``)."""
    words: set[str] = set()
    for run in set(_WORD_RUN.findall(text)):
        word = run.rstrip(_NOT_FINAL)
        if word == run:
            words.add(run)
            continue
        if word:
            words.add(word)
        words.update(ch for ch in run[len(word):] if ch in _CURRENCY)
    return words


def has_trailing_id(subject: str) -> bool:
    """True when the subject ends in an id-like token.

    Same answer as searching ``\\s{3,}\\S+\\s*$|[\\s-]\\d{4,}\\s*$|[\\s(\\[#][a-z]*\\d[a-z\\d]{4,}
    [)\\]]?\\s*$``, which is quadratic on long runs of white space; computed from the end of
    the subject instead (``str.isspace`` / ``isdecimal`` are the regex's ``\\s`` / ``\\d``).
    """
    text = subject.rstrip()
    if not text:
        return False
    # \s{3,}\S+\s*$ : the last word, preceded by at least three white-space characters.
    word = _trailing_run(text, _not_space)
    if len(text) - word >= 3 and text[-word - 3 : -word].isspace():
        return True
    # [\s-]\d{4,}\s*$ : at least four trailing digits after white space or "-".
    digits = _trailing_run(text, str.isdecimal)
    if digits >= 4 and len(text) > digits and (text[-digits - 1].isspace()
                                               or text[-digits - 1] == "-"):
        return True
    # [\s(\[#][a-z]*\d[a-z\d]{4,}[)\]]?\s*$ : the id is the whole trailing [a-z\d] run.
    if text[-1] in ")]":
        text = text[:-1]
    run = _trailing_run(text, _is_id_char)
    if not run or len(text) == run:
        return False
    before = text[-run - 1]
    if not (before.isspace() or before in "([#"):
        return False
    token = text[-run:]
    first_digit = next((i for i, ch in enumerate(token) if ch.isdecimal()), len(token))
    return len(token) - first_digit - 1 >= 4


def _not_space(ch: str) -> bool:
    return not ch.isspace()


def _is_id_char(ch: str) -> bool:
    return "a" <= ch <= "z" or ch.isdecimal()


def _trailing_run(text: str, accept: Callable[[str], bool]) -> int:
    """Length of the longest suffix of ``text`` whose characters all satisfy ``accept``."""
    n = 0
    for ch in reversed(text):
        if not accept(ch):
            break
        n += 1
    return n


def _words(text: str, prefix: str, out: set[str]) -> None:
    # Tokens are a set: classify each distinct word once (text repeats most words).
    for word in words_of(text.lower()):
        n = len(word)
        if n > 20:
            out.add(f"{prefix}long:{n // 10}")
        elif word[0].isdecimal() and _DIGITS.match(word):  # (a cheap test first)
            out.add(f"{prefix}num:{n}" if n > 2 else prefix + word)
        elif n > 1 or not word.isascii():
            out.add(prefix + word)


def _take_emails(text: str, out: set[str], recipients: frozenset[str]) -> str:
    """Add the e-mail address tokens; return ``text`` with each address replaced by " ".

    Addresses never contain whitespace, so only the whitespace-delimited words holding an
    "@" are searched: running ``_EMAIL`` over the whole text tries up to 64 characters at
    every position and was the slowest step of tokenising (same result, see the tests).
    """
    pieces: list[str] = []
    last = 0
    for rest in _AT_REST.finditer(text):  # "@" is a literal: found at C speed
        start = rest.start()
        while start > 0 and not text[start - 1].isspace():  # back to the word's start
            start -= 1
        for m in _EMAIL.finditer(text, start, rest.end()):
            out.add("em:" + registrable_domain(m.group(1)))
            if m.group(0).lower() in recipients:
                out.add("body:rcpt")
            pieces += (text[last:m.start()], " ")
            last = m.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _letter_words(text: str) -> tuple[int, int]:
    r"""How many words of 3+ ASCII letters ``text`` has, and how many of them are all
    capitals: the matches of ``\b[A-Za-z]{3,}\b`` and ``\b[A-Z]{3,}\b``, counted in one
    pass (a maximal run of word characters matches exactly when it is all ASCII letters);
    the two regular expressions tried a match at every position, twice."""
    words = caps = 0
    for run in _WORD_CHARS.findall(text):
        if run.isascii() and run.isalpha():
            words += 1
            caps += run.isupper()
    return words, caps


def body_tokens(
    text: str, out: set[str], *, prefix: str = "w:", recipients: frozenset[str] = frozenset()
) -> None:
    """Word tokens plus cheap shape signals (caps ratio, punctuation, scripts).

    E-mail addresses become ``em:<registrable domain>`` (and ``body:rcpt`` when one of
    them is a recipient's), not words: local parts are per-person noise.
    """
    text = text[:MAX_TEXT]
    if "@" in text:
        text = _take_emails(text, out, recipients)
    _words(text, prefix, out)
    words, caps = _letter_words(text)
    if words >= 10:
        out.add(f"caps:{min(10, caps * 20 // words)}")
    out.add(f"excl:{bucket(text.count('!'))}")
    out.add(f"dollar:{bucket(text.count('$'))}")
    if not text.isascii():  # every script range below is outside ASCII
        for name, pattern in _SCRIPT:
            if pattern.search(text):
                out.add("script:" + name)


def _link_tokens(links: Iterable[str], from_domain: str, out: set[str]) -> None:
    domains: set[str] = set()
    count = 0
    for url in links:
        count += 1
        if count > MAX_LINKS:
            break
        m = _URL_HOST.match(url)
        if m is None:
            continue
        netloc = m.group(1).lower()
        if "@" in netloc:
            out.add("url:userinfo")
            netloc = netloc.rsplit("@", 1)[1]
        host = netloc
        if not host.startswith("["):
            host, _, port = netloc.partition(":")
            if port:
                out.add("url:port")
        if "%" in host:
            out.add("url:escaped")
        if is_ip(host):
            out.add("url:ip")
            continue
        reg = registrable_domain(host)
        if reg:
            domains.add(reg)
            out.add("ud:" + reg)
        out.add("ut:" + tld(host))
        if url[:5].lower() == "https":
            out.add("url:https")
        if "http" in url[8:].lower():
            out.add("url:redirect")
    out.add(f"url:n:{bucket(count)}")
    out.add(f"url:domains:{bucket(len(domains))}")
    if from_domain and from_domain in domains:
        out.add("url:from_domain")


def field_tokens(
    subject: str, from_addr: str, from_name: str, to_count: int, out: set[str]
) -> None:
    """Tokens of the fields every interface has (also used by :func:`check_spam`)."""
    subject = structure.strip_subject_tags(subject)
    _words(subject, "s:", out)
    letters = [c for c in subject if c.isalpha()]
    if not subject.strip():
        out.add("subj:empty")
    elif len(letters) >= 6 and sum(c.isupper() for c in letters) * 10 >= len(letters) * 6:
        out.add("subj:caps")
    for ch, name in (("!", "excl"), ("$", "dollar"), ("%", "pct"), ("?", "question")):
        if ch in subject:
            out.add("subj:" + name)
    first = subject.lstrip().split(":", 1)[0].lower() if ":" in subject[:6] else ""
    if first in _SHORT_WORDS:
        out.add("subj:" + first)
    if has_trailing_id(subject):
        out.add("subj:trailing_id")
    local, _, domain = from_addr.lower().rpartition("@")
    if not domain:
        out.add("from:none")
    else:
        out.add("fd:" + registrable_domain(domain))
        out.add("ftld:" + tld(domain))
        if sum(c.isdigit() for c in local) >= 3:
            out.add("from:digits")
        out.add(f"from:locallen:{bucket(len(local))}")
    if "@" in from_name:
        out.add("fn:has_addr")  # the display name's words are per-person noise
    out.add(f"to:n:{bucket(to_count)}")


def structure_tokens(
    msg: ParsedMessage, html: str, html_text: str, from_domain: str, out: set[str],
    raw: bytes | None = None,
) -> None:
    """The tokens of :mod:`mailsac.spam.structure` (how the message is built)."""
    structure.url_host_tokens(msg.links, out)
    if html:
        structure.html_tokens(html, html_text, out)
    structure.obfuscation_tokens((msg.text or html_text)[:MAX_TEXT], out)
    structure.obfuscation_tokens(msg.subject[:500], out)
    structure.encoding_tokens(msg.headers, structure.raw_subject(raw) if raw else "", out)
    structure.name_tokens(msg, from_domain, out)


def extract_tokens(msg: ParsedMessage, raw: bytes | None = None) -> set[str]:
    """All feature tokens of one message.

    ``raw`` (when the caller has it) adds one raw-only signal: whether the Subject
    header was RFC 2047 encoded (``subj:encoded``), which parsing decodes away.
    """
    out: set[str] = set()
    sender = msg.from_[0] if msg.from_ else None
    from_addr = sender.address if sender else ""
    from_domain = registrable_domain(from_addr.rpartition("@")[2]) if "@" in from_addr else ""
    field_tokens(msg.subject, from_addr, sender.name if sender else "", len(msg.to), out)
    text = msg.text or ""
    html = msg.html or ""
    html_text = html_to_text(html[: MAX_TEXT * 4], limit=MAX_TEXT) if html else ""
    if html and not text:
        out.add("body:html")  # HTML without a plain-text alternative
    rcpt = frozenset(a.address.lower() for a in msg.to + msg.cc if "@" in a.address)
    if text:
        body_tokens(text, out, recipients=rcpt)
    if html_text and (not text or html_text[:200] != text[:200]):
        body_tokens(html_text, out, recipients=rcpt)
    _link_tokens(msg.links, from_domain, out)
    structure_tokens(msg, html, html_text, from_domain, out, raw)
    for att in msg.attachments[:20]:
        out.add("att:" + att.content_type[:40])
        if att.file_name and "." in att.file_name:
            out.add("att:ext:" + att.file_name.rsplit(".", 1)[1].lower()[:8])
    out.add(f"att:n:{bucket(len(msg.attachments))}")
    if msg.defects:
        out.add(f"defects:{bucket(msg.defects)}")
    hdr.header_tokens(msg, from_domain, out)
    return out
