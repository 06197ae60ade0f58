"""The spam report of one message: its score, the tokens that decided it and which
model layers (shipped counts, operator teaching, community feedback) moved it.

Served by ``GET /api/messages/{id}/spam-report``; CPU-bound (tokenising the message),
so call :func:`spam_report` in a worker thread.
"""

from __future__ import annotations

import math

import xxhash

from mailsac.mime import ParsedMessage, parse_message
from mailsac.spam.bayes import SpamModel
from mailsac.spam.features import extract_tokens
from mailsac.spam.scoring import sigmoid

__all__ = ["spam_report"]

MAX_LISTED = 15  # tokens listed for and against


def _round(value: float) -> float:
    return round(value, 4) if math.isfinite(value) else 0.0


def spam_report(model: SpamModel, raw: bytes, parsed: ParsedMessage | None = None,
                limit: int = MAX_LISTED) -> dict[str, object]:
    """Score, strongest tokens for (spam) and against (ham), and the layers' shares."""
    import numpy as np

    names = sorted(extract_tokens(parsed or parse_message(raw), raw))
    digest = xxhash.xxh32_intdigest
    raw_hashes = np.array([digest(t.encode("utf-8", "surrogatepass")) for t in names],
                          dtype=np.uint32)
    unique, first = np.unique(raw_hashes, return_index=True)
    # lone surrogates (undecodable mail) would break the JSON encoder: shown replaced
    names = [names[i].encode("utf-8", "replace").decode("utf-8") for i in first.tolist()]
    logits = model.combined_logits(unique).tolist()
    ranked = sorted((t for t in zip(names, logits, strict=True) if t[1] != 0.0),
                    key=lambda t: -abs(t[1]))
    spammy = [{"token": n, "logit": _round(v)} for n, v in ranked if v > 0][:limit]
    hammy = [{"token": n, "logit": _round(v)} for n, v in ranked if v < 0][:limit]
    shipped, trusted, final = model.logit_parts(unique)
    known = model.layer_token_counts(unique)
    return {
        "spam": _round(sigmoid(final)),
        "isSpam": sigmoid(final) > 0.5,
        "tokens": len(names),
        "discriminators": len(ranked),
        "evidenceSlots": model.params.evidence,
        "forSpam": spammy,
        "againstSpam": hammy,
        "layers": {
            "shipped": {"spam": _round(sigmoid(shipped)), "logit": _round(shipped)},
            "operator": {"logitShift": _round(trusted - shipped),
                         "tokensKnown": known["operator"]},
            "community": {"logitShift": _round(final - trusted),
                          "tokensKnown": known["community"],
                          "maxShift": _round(model.max_shift())},
        },
    }
