"""Spam scoring: a Robinson-Fisher style Naive Bayes model over mail-specific tokens.

``score_message(raw)`` gives the Mailsac ``spam`` property (0.0 ham ... 1.0 spam, 0.5 is
the decision point); ``check_spam`` mirrors Mailsac's classifier server; the shared
``default_model()`` learns online via ``learn`` and persists that with
``export_state`` / ``apply_updates``.  ``python -m mailsac spam train|score|eval``
(:mod:`mailsac.spam.cli`) rebuilds and measures the shipped model.

Module map: ``features``/``headers``/``domains`` (message -> tokens), ``scoring``
(the arithmetic), ``bayes`` (counts, learning, poisoning guard), ``modelfile`` (model
file), ``corpus``/``train``/``evaluate``/``online`` (offline; ``online``: cross-corpus and
stream evaluation), ``api`` (service entry points), ``report`` (why a message scored so).
"""

from __future__ import annotations

from mailsac.spam.api import DEFAULT_MODEL_PATH, check_spam, default_model, score_message
from mailsac.spam.bayes import SpamModel, Update

__all__ = [
    "DEFAULT_MODEL_PATH",
    "SpamModel",
    "Update",
    "check_spam",
    "default_model",
    "score_message",
]
