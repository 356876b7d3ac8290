"""Tactic steps from the REPL's info tree, proven on real Lean output (the recorded transcripts), and
why `allTactics` is not the source: what its real answers lack."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import TRANSCRIPTS
from leanstep.data.steps import COMBINATORS, NO_GOALS, TacticStep, render_state, steps_from_infotree
from leanstep.repl.protocol import CommandResponse, InfoTree, Pos, decode_response, split_frames

CORE = TRANSCRIPTS / "test"


def exchange(name: str, index: int = 0) -> tuple[dict, CommandResponse]:
    """The ``index``-th request of a transcript and the REPL's recorded answer to it."""
    request = json.loads(split_frames((CORE / f"{name}.in").read_text(encoding="utf-8"))[index])
    answer = decode_response(split_frames((CORE / f"{name}.expected.out").read_text(encoding="utf-8"))[index])
    assert isinstance(answer, CommandResponse)
    return request, answer


def raw_answer(name: str, index: int = 0) -> dict:
    return json.loads(split_frames((CORE / f"{name}.expected.out").read_text(encoding="utf-8"))[index])


def tactic_nodes(trees: tuple[InfoTree, ...]) -> list[InfoTree]:
    found = []
    for tree in trees:
        if tree.kind == "TacticInfo":
            found.append(tree)
        found += tactic_nodes(tree.children)
    return found


# --------------------------------------------------------------------------- #
# The info tree gives the pairs


def test_a_substantive_tree_gives_each_tactic_with_its_goals_before_and_after():
    request, answer = exchange("infotree")
    assert request["infotree"] == "substantive"
    assert answer.infotree is not None
    steps = steps_from_infotree(answer.infotree, request["cmd"])
    assert steps == [TacticStep("constructor", ("h : Int\n⊢ Nat",), (), Pos(1, 28), Pos(1, 39),
                                "Lean.Parser.Tactic.constructor")]
    assert steps[0].state_before == "h : Int\n⊢ Nat" and steps[0].state_after == NO_GOALS
    assert steps[0].main_goal == "h : Int\n⊢ Nat"


def test_a_full_tree_gives_the_same_one_step_though_combinators_wrap_it_with_the_same_goals():
    request, answer = exchange("infotree_theorem")
    assert request["infotree"] == "full" and answer.infotree is not None
    nodes = tactic_nodes(answer.infotree)
    names = [n.node["name"] for n in nodes if n.node is not None]
    # Lean's own output: `by exact h` is four combinator nodes around `exact h`, every one with its goals.
    assert names == ["Lean.Parser.Term.byTactic", None, "Lean.Parser.Tactic.tacticSeq",
                     "Lean.Parser.Tactic.tacticSeq1Indented", "Lean.Parser.Tactic.exact"]
    assert all(n.node is not None and n.node["goalsBefore"] == ["p : Prop\nh : p\n⊢ p"] for n in nodes)
    assert set(names[:-1]) <= COMBINATORS
    steps = steps_from_infotree(answer.infotree, request["cmd"])
    assert steps == [TacticStep("exact h", ("p : Prop\nh : p\n⊢ p",), (), Pos(1, 43), Pos(1, 50),
                                "Lean.Parser.Tactic.exact")]
    assert any(n.node is not None and n.node["stx"]["pp"] == "<failed to pretty print>" for n in nodes)


@pytest.mark.parametrize("name", ["infotree", "infotree_theorem"])
def test_the_tactic_text_is_the_source_at_the_range_and_agrees_with_leans_printing(name):
    request, answer = exchange(name)
    assert answer.infotree is not None
    from_source = steps_from_infotree(answer.infotree, request["cmd"])
    from_printing = steps_from_infotree(answer.infotree)
    assert from_source == from_printing and from_source


def _constructor_node() -> dict:
    """The real `constructor` node of the `infotree` transcript, as JSON, to vary."""
    return copy.deepcopy(raw_answer("infotree")["infotree"][0])


def test_syntax_a_macro_made_is_not_a_step_but_what_the_user_wrote_inside_it_is():
    outer = _constructor_node()
    outer["node"]["stx"]["range"]["synthetic"] = True
    inner = _constructor_node()
    outer["children"] = [inner]
    steps = steps_from_infotree([InfoTree.from_json(outer)])
    assert [s.tactic for s in steps] == ["constructor"] and len(steps) == 1


def test_nested_steps_are_each_kept_with_their_own_goals_outer_first():
    source = "example (p q : Prop) (hq : q) : q := by\n  have h : q := by exact hq\n  exact h"
    have = _constructor_node()
    have["node"].update(name="Lean.Parser.Tactic.tacticHave_", goalsBefore=["p q : Prop\nhq : q\n⊢ q"],
                        goalsAfter=["p q : Prop\nhq h : q\n⊢ q"])
    have["node"]["stx"]["range"].update(start={"line": 2, "column": 2}, finish={"line": 2, "column": 27})
    inner = _constructor_node()
    inner["node"].update(name="Lean.Parser.Tactic.exact", goalsBefore=["p q : Prop\nhq : q\n⊢ q"], goalsAfter=[])
    inner["node"]["stx"]["range"].update(start={"line": 2, "column": 19}, finish={"line": 2, "column": 27})
    have["children"] = [inner]
    steps = steps_from_infotree([InfoTree.from_json(have)], source)
    assert [(s.tactic, s.goals_after) for s in steps] == [
        ("have h : q := by exact hq", ("p q : Prop\nhq h : q\n⊢ q",)), ("exact hq", ())]


def test_a_node_that_ran_on_no_goal_is_not_a_step():
    node = _constructor_node()
    node["node"]["goalsBefore"] = []
    assert steps_from_infotree([InfoTree.from_json(node)]) == []


def test_a_whole_state_shows_its_goals_apart_and_says_when_none_is_left():
    assert render_state(["a : Nat\n⊢ a = a", "⊢ True"]) == "a : Nat\n⊢ a = a\n\n⊢ True"
    assert render_state([]) == NO_GOALS


# --------------------------------------------------------------------------- #
# What `allTactics` answers lack (why it is not the source)


ALL_TACTICS = [("all_tactics", 0), ("all_tactics-20250622", 0), ("calc", 0), ("file", 0), ("file2", 0),
               ("self_proof_check", 5)]


@pytest.mark.parametrize(("name", "index"), ALL_TACTICS)
def test_all_tactics_entries_carry_goals_before_as_one_string_and_no_goals_after(name, index):
    entries = raw_answer(name, index)["tactics"]
    assert entries
    for entry in entries:
        assert set(entry) == {"usedConstants", "tactic", "proofState", "pos", "goals", "endPos"}
        assert isinstance(entry["goals"], str)


def test_all_tactics_lists_the_steps_block_of_calc_with_no_goals():
    _, answer = exchange("calc")
    block = [t for t in answer.tactics if t.goals == NO_GOALS]
    assert len(block) == 1 and block[0].tactic.startswith("\n  3 = 4 := by sorry")


def test_the_goals_after_an_all_tactics_entry_cost_another_request():
    _, answer = exchange("all_tactics-20250622", 0)
    entry = answer.tactics[0]
    rerun = json.loads(split_frames((CORE / "all_tactics-20250622.in").read_text(encoding="utf-8"))[1])
    assert rerun == {"tactic": entry.tactic, "proofState": entry.proof_state}
    assert raw_answer("all_tactics-20250622", 1) == {"proofStatus": "Completed", "proofState": 1, "goals": []}
