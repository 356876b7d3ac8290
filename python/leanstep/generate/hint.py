"""A model-free backend: a fixed list of common finishing tactics, as Lean's own ``hint`` tactic tries.

With no weights and no GPU this still gives useful suggestions, because the
checker decides: every candidate runs on the goal, and only those that are
valid or close it reach the editor. It is what ``leanstep serve --no-model``
serves, a baseline for the model backends, and the way to try every route on a
laptop (``--repl sim``).

A candidate is each listed tactic that starts with the request's prefix, in the
list's order; when none does, the prefix itself (a complete tactic the user
typed) is the one candidate. Scores follow the order (0, -0.001, -0.002, ...),
so the list's order is the ranking before checking. There is nothing to
sample, so ``num_samples`` does not apply: the list is the budget.

A whole-proof request gets one proof per listed tactic: the statement closed
by that tactic alone (``theorem foo : ... := by`` + newline + ``  norm_num``),
the model-free baseline that "one finishing tactic" proofs are.
"""

from __future__ import annotations

from .base import Candidate, GenerationRequest, GeneratorSettings

DEFAULT_HINT_TACTICS: tuple[str, ...] = (
    "rfl", "trivial", "assumption", "decide", "simp", "simp_all", "omega", "norm_num", "linarith", "nlinarith",
    "positivity", "ring", "aesop", "tauto", "contradiction", "constructor", "exact?",
)
RANK_STEP = 0.001
UNFINISHED = frozenset({"constructor", "exact?"})  # never a whole proof on their own


class HintGenerator:
    """Generator over a fixed tactic list; thread-safe (it holds no state)."""

    def __init__(self, settings: GeneratorSettings) -> None:
        tactics = tuple(t.strip() for t in settings.hint_tactics or DEFAULT_HINT_TACTICS if t.strip())
        if not tactics:
            raise ValueError("the hint backend needs at least one tactic (--hint-tactics)")
        self.tactics = tuple(dict.fromkeys(tactics))

    def warmup(self) -> None:
        """Nothing to load."""

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        if request.proof is not None:
            statement = request.proof.statement
            glue = "" if statement.endswith((" ", "\n")) else "\n  "
            return [Candidate(statement + glue + t, 0.0 - RANK_STEP * rank) for rank, t in enumerate(self.tactics)
                    if t not in UNFINISHED]
        prefix = request.prefix.strip()
        matching = [t for t in self.tactics if t.startswith(prefix)] or ([prefix] if prefix else [])
        return [Candidate(text, 0.0 - RANK_STEP * rank) for rank, text in enumerate(matching)]
