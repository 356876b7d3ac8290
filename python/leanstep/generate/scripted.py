"""A model-free backend that replays proposals from a file: ``--backend scripted --script FILE``.

For runs that must be the same every time without weights: benchmarks and
demonstrations of search and repair on the simulated REPL, and replaying
proposals a model made once (so the checking side can be measured apart from
the model). The file holds JSON lines, one entry each:

* ``{"goal": "x : ℕ\\n⊢ x + 0 = x", "tactics": ["simp", {"text": "omega", "score": -0.5}]}``:
  next tactics for a goal. An entry matches a request whose goal is the same
  text up to whitespace, or whose last ``⊢`` line is the entry's ``goal`` (so a
  script may name the target only). Tactics that do not start with the
  request's prefix are left out.
* ``{"theorem": "foo", "proofs": ["theorem foo : 1 + 1 = 2 := by norm_num"], "round": 0}``:
  whole proofs for the theorem whose name the request's statement declares;
  ``round`` (optional) restricts the entry to that repair round (0: the first
  samples, 1: the first repair, ...).

A proposal without a ``score`` gets one from its place in the list (0, -0.001,
...), so the list's order is the ranking. Entries for the same key add up, in
file order. A request nothing matches gets no candidates. ``num_samples``
does not apply: the file is the budget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Candidate, GenerationRequest, GeneratorSettings

RANK_STEP = 0.001
_DECLARED = re.compile(r"(?:theorem|lemma)\s+(«[^»]+»|[^\s:(\[{⦃]+)")


class ScriptError(ValueError):
    """The script file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class _Proofs:
    round: int | None
    proposals: tuple[Candidate, ...]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _target_line(goal: str) -> str:
    lines = [line for line in goal.strip().split("\n") if line.startswith("⊢")]
    return _normalise(lines[-1]) if lines else ""


def _proposals(raw: Any, where: str) -> tuple[Candidate, ...]:
    if not isinstance(raw, list):
        raise ScriptError(f"{where}: expected a list of proposals")
    out = []
    for rank, item in enumerate(raw):
        if isinstance(item, str):
            out.append(Candidate(item, -RANK_STEP * rank))
        elif isinstance(item, dict) and isinstance(item.get("text"), str) and \
                isinstance(item.get("score", 0.0), (int, float)) and not isinstance(item.get("score"), bool):
            out.append(Candidate(item["text"], float(item.get("score", -RANK_STEP * rank))))
        else:
            raise ScriptError(f"{where}: proposal {rank} must be a string or {{\"text\", \"score\"}}")
    return tuple(out)


def declared_theorem(statement: str) -> str | None:
    """The name of the last theorem or lemma ``statement`` declares (guillemets removed)."""
    names = _DECLARED.findall(statement)
    return names[-1].replace("«", "").replace("»", "") if names else None


class ScriptedGenerator:
    """Generator over a proposals file (see the module docstring); thread-safe (read-only after loading)."""

    def __init__(self, settings: GeneratorSettings) -> None:
        if not settings.script:
            raise ValueError("the scripted backend needs a proposals file (--script FILE)")
        self.path = Path(settings.script)
        self.tactics: dict[str, list[Candidate]] = {}
        self.proofs: dict[str, list[_Proofs]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ScriptError(f"{self.path}: cannot read the script: {exc}") from None
        self._load(lines)

    def _load(self, lines: Iterable[str]) -> None:
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScriptError(f"{where}: not JSON ({exc.msg})") from None
            if isinstance(entry, dict) and isinstance(entry.get("goal"), str):
                self.tactics.setdefault(_normalise(entry["goal"]), []).extend(
                    _proposals(entry.get("tactics"), where))
            elif isinstance(entry, dict) and isinstance(entry.get("theorem"), str):
                round_ = entry.get("round")
                if round_ is not None and (not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0):
                    raise ScriptError(f"{where}: `round` must be a non-negative integer")
                self.proofs.setdefault(entry["theorem"], []).append(
                    _Proofs(round_, _proposals(entry.get("proofs"), where)))
            else:
                raise ScriptError(f"{where}: expected an object with `goal` and `tactics`, "
                                  "or `theorem` and `proofs`")

    def warmup(self) -> None:
        """Nothing to load."""

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        if request.proof is not None:
            name = declared_theorem(request.proof.statement)
            depth = len(request.proof.feedback)
            return [c for entry in self.proofs.get(name or "", []) if entry.round in (None, depth)
                    for c in entry.proposals]
        goal = _normalise(request.tactic_state)
        found = self.tactics.get(goal)
        if found is None:
            found = self.tactics.get(_target_line(request.tactic_state), [])
        prefix = request.prefix.strip()
        return [c for c in found if c.text.startswith(prefix)]
