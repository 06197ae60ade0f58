"""SMTP failure injection ("chaos"): rules that make the SMTP server fail on purpose.

:mod:`.rules` (what a rule is, validation), :mod:`.store` (tables), :mod:`.matcher`
(the in-memory index), :mod:`.service` (the per-node service). The SMTP side is
:mod:`mailsac.smtp.faults`, the HTTP side :mod:`mailsac.api.chaos`.
"""

from mailsac.chaos.rules import Rule, RuleSpec, parse_rule
from mailsac.chaos.service import Chaos, Fault

__all__ = ["Chaos", "Fault", "Rule", "RuleSpec", "parse_rule"]
