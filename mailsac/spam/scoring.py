"""The scoring arithmetic: Robinson token probabilities -> mean logit -> hedged sigmoid.

For every token the model knows ``s`` (weight of spam documents containing it) and
``h`` (ham documents), out of ``S`` spam and ``H`` ham documents.  Robinson's estimate

    p = (s/S) / (s/S + h/H)                 (class-prior free)
    f = (strength * 0.5 + (s+h) * p) / (strength + s + h)

shrinks rarely seen tokens towards 0.5.  Tokens with ``|f - 0.5| > min_dev`` are
"discriminators"; the ``max_tokens`` strongest are kept and their logits
``log(f / (1 - f))`` (f clipped to [f_min, 1 - f_min]) are averaged.  The mean is
shrunk for messages with little evidence (``m * n / (n + evidence)``) and mapped to a
probability-like score with a fitted sigmoid ``1 / (1 + exp(-(a * m + b)))``.

Averaging (instead of summing as Naive Bayes does, or chi-square combining as
SpamBayes does) keeps the statistic bounded by ``logit(1 - f_min)``, so the score is
graded instead of saturating at 0/1, and ranks mail best in our measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Params", "mean_logit", "sigmoid", "token_logits"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Params:
    """Scoring hyper-parameters and the fitted calibration ``(a, b)``."""

    strength: float = 0.2
    min_dev: float = 0.3
    max_tokens: int = 300
    f_min: float = 0.01
    evidence: float = 3.0
    a: float = 1.7
    b: float = 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "strength": self.strength,
            "min_dev": self.min_dev,
            "max_tokens": self.max_tokens,
            "f_min": self.f_min,
            "evidence": self.evidence,
            "a": self.a,
            "b": self.b,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Params:
        def num(key: str, default: float) -> float:
            value = data.get(key, default)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"bad model parameter {key!r}")
            return float(value)

        d = cls()
        return cls(
            strength=num("strength", d.strength),
            min_dev=num("min_dev", d.min_dev),
            max_tokens=int(num("max_tokens", d.max_tokens)),
            f_min=num("f_min", d.f_min),
            evidence=num("evidence", d.evidence),
            a=num("a", d.a),
            b=num("b", d.b),
        )


def token_logits(
    spam: FloatArray, ham: FloatArray, spam_docs: float, ham_docs: float, params: Params
) -> FloatArray:
    """Per-token ``log(f / (1 - f))``; exactly 0.0 for tokens that are not discriminators."""
    sr = spam / max(spam_docs, 1.0)
    hr = ham / max(ham_docs, 1.0)
    total = sr + hr
    p = np.divide(sr, total, out=np.full_like(sr, 0.5), where=total > 0)
    n = spam + ham
    f = (params.strength * 0.5 + n * p) / (params.strength + n)
    f = np.clip(f, params.f_min, 1.0 - params.f_min)
    logits = np.log(f) - np.log1p(-f)
    logits[np.abs(f - 0.5) <= params.min_dev] = 0.0
    return logits


def mean_logit(logits: FloatArray, params: Params) -> float:
    """The evidence-shrunk mean of the ``max_tokens`` strongest non-zero logits."""
    strong = logits[logits != 0.0]
    count = int(strong.size)
    if count == 0:
        return 0.0
    if count > params.max_tokens:
        keep = np.argpartition(-np.abs(strong), params.max_tokens - 1)[: params.max_tokens]
        strong = strong[keep]
        count = params.max_tokens
    return float(strong.mean()) * count / (count + params.evidence)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
