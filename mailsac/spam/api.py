"""The service-facing entry points: the shipped model, message scores, check_spam."""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Sequence
from pathlib import Path

from mailsac.mime import ParsedMessage, html_to_text
from mailsac.spam.bayes import SpamModel
from mailsac.spam.features import MAX_TEXT, body_tokens, field_tokens

__all__ = ["DEFAULT_MODEL_PATH", "check_spam", "default_model", "score_message"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model" / "default.npz"

_lock = threading.Lock()
_default: SpamModel | None = None


def default_model() -> SpamModel:
    """The shipped model, loaded once per process (thread-safe).

    This one shared instance is also where online learning goes: call ``learn`` /
    ``apply_updates`` on it.  Use ``default_model().copy()`` for a private copy.
    """
    global _default
    model = _default
    if model is None:
        with _lock:
            model = _default
            if model is None:
                model = _default = SpamModel.load(DEFAULT_MODEL_PATH)
    return model


def score_message(
    raw: bytes | None = None,
    parsed: ParsedMessage | None = None,
    model: SpamModel | None = None,
) -> float:
    """Spam score in [0, 1] (0.5 = decision point) of a raw and/or parsed message.

    Pass both when the message is already parsed: ``raw`` adds a few raw-only signals.
    CPU-bound (about a millisecond); call it via ``asyncio.to_thread`` from async code.
    """
    return (model or default_model()).score(raw, parsed)


MAX_ADDRESS_FIELD = 64 * 1024  # characters of the "to" / "from" fields handed to the parser


def _addresses(value: str | Sequence[str]) -> list[tuple[str, str]]:
    values = [value] if isinstance(value, str) else list(value)
    field = ", ".join(str(v) for v in values)[:MAX_ADDRESS_FIELD]
    try:  # the stdlib parser recurses on "(((..." and "a:a:a:...": RecursionError
        pairs = email.utils.getaddresses([field])
    except Exception:
        return []
    return [(n, a) for n, a in pairs if a or n]


def check_spam(
    to: str | Sequence[str],
    from_: str,
    subject: str,
    text: str,
    model: SpamModel | None = None,
) -> dict[str, float | bool]:
    """Mailsac classifier-server compatible check: ``{"spamminess", "spam"}``.

    Only these four fields are known, so header-derived features are left out.
    """
    tokens: set[str] = set()
    senders = _addresses(from_)
    name, addr = senders[0] if senders else ("", "")
    field_tokens(subject or "", addr, name, len(_addresses(to)), tokens)
    body = text or ""
    if body.lstrip()[:1] == "<" and "</" in body:
        tokens.add("body:html")
        body = html_to_text(body[: MAX_TEXT * 4], limit=MAX_TEXT)  # as for stored mail
    body_tokens(body, tokens)
    score = (model or default_model()).score_tokens(tokens)
    return {"spamminess": round(score, 4), "spam": score > 0.5}
