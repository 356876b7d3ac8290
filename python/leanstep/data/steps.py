"""Tactic steps (goals before, tactic, goals after) read off the REPL's info tree.

Which output of the REPL gives the pairs, read off Lean's own answers (the recorded transcripts
``all_tactics``, ``calc``, ``file``, ``infotree`` and ``infotree_theorem``; docs/repl-protocol.md §4.1):

* ``allTactics`` lists the tactics we want (the REPL keeps those whose syntax is original and not a
  combinator), but gives the goals *before* each one only, and as one string in which several goals
  are joined by a single newline (Lean's ``ContextInfo.ppGoals``), so a state of two goals cannot be
  split back into goals. It has no goals *after*: they would cost one more REPL request per step
  (the tactic re-run from the entry's ``proofState``), a re-run that is not the run that happened in
  the file, and a proof state per tactic that the REPL never frees. Its entries also include
  structure that is not a step: ``calc`` lists its block of steps with the goals ``"no goals"``.
* ``infotree`` gives, for every ``TacticInfo`` node, ``goalsBefore`` and ``goalsAfter`` with one string
  per goal, each printed by ``Meta.ppGoal``: the function the ``llmstep`` tactic prints the goal it
  sends with (``LeanTactic/Frontend.lean``), so a prompt built from a step shows the model the text it
  will see when serving. It also gives the syntax's range and whether that syntax is ``synthetic``
  (made by a macro, not written by the user), in the same answer, with no proof state kept.
  Of its kinds, ``full`` adds every term and command node, and ``tactics`` and ``original`` keep the
  combinators: ``infotree_theorem`` shows ``by exact h`` as four nested nodes (``byTactic``, the ``by``
  atom with ``name: null``, ``tacticSeq``, ``tacticSeq1Indented``) around ``exact h``, all with the
  same goals. Kept as steps, each would teach a whole proof as one tactic. ``substantive`` drops
  those combinators (the REPL's ``isSubstantive``) and keeps everything else.

So extraction asks for ``substantive`` and keeps a node as a step when (the selection of
``allTactics`` itself, ``isOriginal && isSubstantive``, with the goals after added):

* it is a ``TacticInfo`` whose name is not a combinator (checked again here, so a tree of any
  kind gives the same steps: the ``full`` tree of ``infotree_theorem`` gives the one step ``exact h``);
* its syntax is original, not ``synthetic``: what a macro expanded into was not written by anyone;
* it had goals before (a node that ran on no goal is structure, not a step).

Children of a dropped node are still visited, as the REPL's own filter hoists them. Nested steps
are all kept, each with its own goals: ``have h : p := by simp`` is a step of the outer proof (goal
``G`` to ``h : p ⊢ G``) and ``simp`` a step of the inner one (``⊢ p`` to no goals). Under
``t <;> s``, ``s`` is one step for each goal it ran on. The tactic text is the source the user
wrote at the node's range (``stx.pp``, Lean's re-printing, when no source is given).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from leanstep.repl.protocol import InfoTree, Pos

# Tactic syntax the REPL calls a combinator, not a step (`Lean.Elab.TacticInfo.isSubstantive`); None: a
# node whose syntax is an atom (the `by` keyword), which the REPL prints as `"name": null`.
COMBINATORS = frozenset({
    None, "null", "Lean.cdot", "Lean.cdotTk", "Lean.Parser.Term.byTactic", "Lean.Parser.Tactic.tacticSeq",
    "Lean.Parser.Tactic.tacticSeq1Indented", "Lean.Parser.Tactic.«tactic_<;>_»", "Lean.Parser.Tactic.paren",
})
NO_GOALS = "no goals"  # the state after a step that closed every goal, as Lean prints it
_UNPRINTABLE = "<failed to pretty print>"


def render_state(goals: Iterable[str]) -> str:
    """A whole tactic state as one text: goals separated by a blank line, ``no goals`` when there is none."""
    return "\n\n".join(goals) or NO_GOALS


@dataclass(frozen=True)
class TacticStep:
    """One tactic as it ran: the goals it ran on, its text, the goals it left; positions as the REPL gave them."""

    tactic: str
    goals_before: tuple[str, ...]
    goals_after: tuple[str, ...]
    pos: Pos
    end_pos: Pos
    kind: str  # the syntax kind, e.g. Lean.Parser.Tactic.exact

    @property
    def main_goal(self) -> str:
        """The goal the tactic ran on first: what the ``llmstep`` tactic sends at this point of the proof."""
        return self.goals_before[0]

    @property
    def state_before(self) -> str:
        return render_state(self.goals_before)

    @property
    def state_after(self) -> str:
        return render_state(self.goals_after)


def _offset(lines: list[str], pos: Pos) -> int | None:
    """Code-point offset of a 1-based line and code-point column in the text ``lines`` were split from."""
    if not 1 <= pos.line <= len(lines) or pos.column > len(lines[pos.line - 1]):
        return None
    return sum(len(line) + 1 for line in lines[: pos.line - 1]) + pos.column


def _source_text(source: str, lines: list[str], start: Pos, end: Pos) -> str | None:
    a, b = _offset(lines, start), _offset(lines, end)
    if a is None or b is None or b <= a:
        return None
    return source[a:b]


def _step(node: InfoTree, source: str | None, lines: list[str]) -> TacticStep | None:
    """The step one node is, or None when it is no step (see the module docstring)."""
    info = node.node
    if node.kind != "TacticInfo" or info is None or info.get("name") in COMBINATORS:
        return None
    stx = info.get("stx") or {}
    where = stx.get("range") or {}
    before = tuple(info.get("goalsBefore") or ())
    if where.get("synthetic", True) or not before or "start" not in where or "finish" not in where:
        return None
    start, end = Pos.from_json(where["start"]), Pos.from_json(where["finish"])
    text = _source_text(source, lines, start, end) if source is not None else None
    if text is None:
        text = stx.get("pp")
    if not isinstance(text, str) or not text.strip() or text == _UNPRINTABLE:
        return None
    return TacticStep(text.strip(), before, tuple(info.get("goalsAfter") or ()), start, end,
                      str(stx.get("kind") or info.get("name")))


def _walk(trees: Iterable[InfoTree]) -> Iterator[InfoTree]:
    for tree in trees:
        yield tree
        yield from _walk(tree.children)


def steps_from_infotree(trees: Iterable[InfoTree], source: str | None = None) -> list[TacticStep]:
    """Every step in ``trees`` (a command's ``infotree``, any kind), outer before inner, in source order.

    ``source``: the text the positions refer to; the step's tactic is then the text written there.
    """
    lines = source.split("\n") if source is not None else []
    found = (_step(node, source, lines) for node in _walk(trees))
    return [step for step in found if step is not None]


__all__ = ["COMBINATORS", "NO_GOALS", "TacticStep", "render_state", "steps_from_infotree"]
