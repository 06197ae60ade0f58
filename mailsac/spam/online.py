"""Carry-over measurement: cross-corpus evaluation and a TREC-style online stream.

* :func:`cross_corpus` trains on one corpus (with :func:`mailsac.spam.train.fit`, as
  ``spam train`` does) and scores every message of another: the number that matters
  for mail the model never saw.
* :func:`stream` replays a corpus in delivery order through a model: each message is
  scored first and then learned with its true label through :meth:`SpamModel.learn`,
  the call :class:`mailsac.spam_feedback.SpamFeedback` makes for API feedback
  (``account_id=None`` is the operator's trusted layer, a string an ordinary, capped
  account). Scores are those a user would have seen at delivery (TREC spam track).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mailsac.spam.bayes import HashArray, SpamModel
from mailsac.spam.corpus import Sample
from mailsac.spam.evaluate import FloatArray, Metrics, metrics
from mailsac.spam.train import fit

__all__ = ["StreamResult", "cross_corpus", "delivery_order", "stream"]

_DATE = re.compile(rb"^Date:[ \t]*([^\r\n]{1,200})", re.IGNORECASE | re.MULTILINE)
MAX_HEADER_SCAN = 64 * 1024  # bytes of a message searched for its Date header


def _sent_at(raw: bytes) -> float | None:
    head = raw[:MAX_HEADER_SCAN]
    end = head.find(b"\n\n")
    m = _DATE.search(head if end < 0 else head[:end])
    if m is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(m.group(1).decode("latin-1"))
        return None if parsed is None else float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def delivery_order(samples: Sequence[Sample], order: str = "date", seed: int = 0) -> list[int]:
    """Indices of ``samples`` in stream order: ``date`` (the Date header; undated
    messages keep their place after the dated one before them), ``file`` or ``shuffle``."""
    if order == "file":
        return list(range(len(samples)))
    if order == "shuffle":
        return [int(i) for i in np.random.default_rng(seed).permutation(len(samples))]
    keys: list[tuple[float, int]] = []
    last = float("-inf")
    for i, sample in enumerate(samples):
        sent = _sent_at(sample.raw)
        last = sent if sent is not None else last
        keys.append((last, i))
    return [i for _, i in sorted(keys)]


def cross_corpus(
    train_docs: Sequence[HashArray], train_labels: Sequence[bool],
    test_docs: Sequence[HashArray], test_labels: Sequence[bool],
) -> Metrics:
    """Train on one corpus, score every message of the other."""
    model = fit(train_docs, train_labels)
    scores = np.array([model.score_hashes(d) for d in test_docs])
    return metrics(scores, np.asarray(test_labels, dtype=bool))


@dataclass(frozen=True, slots=True)
class StreamResult:
    """Metrics over the whole stream and over the part after the first ``warmup``."""

    overall: Metrics
    after_warmup: Metrics | None
    warmup: int
    scores: FloatArray


def stream(
    model: SpamModel, docs: Sequence[HashArray], labels: Sequence[bool], *,
    learn: str = "operator", account: str = "stream-account", warmup: int = 1000,
    learn_limit: int | None = None,
) -> StreamResult:
    """Score each message, then learn it (``learn``: operator, account or none).

    ``learn_limit`` stops learning after that many messages (scoring continues), to
    measure "taught with the first N labels, tested on the rest".
    """
    account_id = None if learn == "operator" else account
    scores = np.zeros(len(docs))
    for i, (hashes, is_spam) in enumerate(zip(docs, labels, strict=True)):
        scores[i] = model.score_hashes(hashes)
        if learn != "none" and (learn_limit is None or i < learn_limit):
            model.learn(hashes, is_spam, account_id=account_id)
    y = np.asarray(labels, dtype=bool)
    tail = None
    if 0 < warmup < y.size and y[warmup:].any() and not y[warmup:].all():
        tail = metrics(scores[warmup:], y[warmup:])
    return StreamResult(metrics(scores, y), tail, warmup, scores)
