"""LeanCopilot's external model API: ``POST /generate`` and ``POST /encode``, as its ``ExternalGenerator`` speaks it.

LeanCopilot (``LeanCopilot/Models/External.lean``) posts ``{"name", "input",
"prefix"}``: the model's name as the user registered it, the pretty-printed
goals (several separated by a blank line) and the tactic prefix. It reads back
``{"outputs": [{"output", "score"}]}`` into ``(String × Float)`` pairs, where
``output`` is the whole tactic, prefix included, and ``score`` is the model's
probability of it; its own server sends ``exp`` of the sequence log-probability,
so a score here is a probability in [0, 1], never NaN or infinite (Lean's JSON
parser has no literal for those). Its Python server treats a null ``prefix`` as
empty, and so does this one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from leanstep.api.common import LeanText, StrictModel
from leanstep.generate.base import Candidate


class GenerateBody(StrictModel):
    """``POST /generate``. ``name`` is accepted whatever it is: the server answers with its configured model."""

    name: str
    input: LeanText
    prefix: LeanText | None = None


def probability(score: float) -> float:
    """A candidate's score (a mean log-probability, <= 0) as a probability in [0, 1]; anything else is clamped."""
    if math.isnan(score):
        return 0.0
    return min(1.0, max(0.0, math.exp(min(score, 0.0))))


def generate_answer_json(candidates: Iterable[Candidate]) -> dict[str, Any]:
    return {"outputs": [{"output": c.text, "score": probability(c.score)} for c in candidates]}


NO_ENCODER = ("this server has no encoder: LeanCopilot's premise selection (`select_premises`) needs one; "
              "leanstep serves tactic generation only (POST /generate)")


__all__ = ["NO_ENCODER", "GenerateBody", "generate_answer_json", "probability"]
