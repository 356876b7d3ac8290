"""Checking candidate tactics at an ``llmstep`` call: goal context, verdicts, budget, parallelism, caching.

The REPL is the simulated one (``python -m leanstep.sim``), run as real
processes through the real pool.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import older_transcript_pairs

from leanstep.check.source import ContextError, build_goal_context, goal_context_from_context, goal_context_from_source
from leanstep.check.tactics import UNVALIDATED, CandidateStatus, ProofPath, TacticChecker, classify
from leanstep.generate.base import Candidate
from leanstep.repl.pool import Priority
from leanstep.repl.protocol import ErrorResponse, Message, Pos, Sorry, TacticResponse, decode_response, split_frames
from server_fixtures import sim_costs, sim_pool

HEADER = "import Mathlib"


def cands(*texts: str) -> list[Candidate]:
    return [Candidate(t, -0.1 * i) for i, t in enumerate(texts)]


def call_position(source: str, nth: int = 0) -> tuple[int, int]:
    """(1-based line, 0-based column) of the nth ``llmstep`` in ``source``."""
    offset = -1
    for _ in range(nth + 1):
        offset = source.index("llmstep", offset + 1)
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1)
    return line, column


def make_sim_pool(monkeypatch, max_repls: int = 4, **costs: float):
    sim_costs(monkeypatch, **costs)
    return sim_pool(max_repls=max_repls)


@pytest.fixture(scope="module")
def pool():
    mp = pytest.MonkeyPatch()
    p = make_sim_pool(mp)
    mp.undo()
    yield p
    p.shutdown()


@pytest.fixture
def fresh_pool(monkeypatch):
    pools = []

    def make(max_repls: int = 4, **costs: float):
        p = make_sim_pool(monkeypatch, max_repls, **costs)
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.shutdown()


# --------------------------------------------------------------------------- #
# Realistic files

MULTI_LINE = """import Mathlib

theorem add_le (a b : ℕ) (h : a < b) :
    a ≤ b := by
  have h1 : a ≤ b := le_of_lt h
  llmstep ""
"""

NESTED_HAVE = """import Mathlib

theorem nested (a b : ℕ) (h : a < b) : a ≤ b ∧ True := by
  constructor
  · have h2 : a ≤ b := by
      llmstep "om" <;> simp
    exact h2
  · trivial

theorem later : 1 + 1 = 2 := by norm_num
"""

MIDDLE = """import Mathlib
import Aesop -- automation

/-! # A file with several theorems -/

namespace Demo

open Nat

theorem t1 (n : ℕ) : n + 0 = n := by
  simp

theorem t2 (n : ℕ) : 0 + n = n := by
  simp

/-- The one we are proving. -/
@[simp]
theorem t3 (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  llmstep ""
  exact hq

theorem t4 : True := trivial

end Demo
"""

TERM_HOLE = """import Mathlib

example (f : ℕ → ℕ) (a : ℕ) : f a = f a := by
  exact congrArg f (by llmstep "")
"""

SET_OPTION_IN = """import Mathlib

theorem first : True := trivial

set_option maxRecDepth 1000 in
theorem second (x : ℕ) : x = x := by
  llmstep ""
"""


def test_context_from_multi_line_proof():
    ctx = goal_context_from_context(MULTI_LINE[: MULTI_LINE.index("llmstep")])
    assert ctx.header == "import Mathlib"
    assert ctx.preamble == ""
    assert ctx.declaration.startswith("theorem add_le (a b : ℕ) (h : a < b) :\n    a ≤ b := by\n")
    assert ctx.declaration.endswith("\n  sorry")
    assert ctx.sorry_pos == Pos(4, 2)


def test_context_from_nested_have_drops_the_rest_of_the_line_and_the_declaration():
    ctx = goal_context_from_source(NESTED_HAVE, *call_position(NESTED_HAVE))
    assert ctx.declaration.splitlines()[-1] == "      sorry"
    assert "<;> simp" not in ctx.declaration and "exact h2" not in ctx.declaration
    assert "later" not in ctx.declaration and "later" not in ctx.preamble
    assert ctx.sorry_pos == Pos(4, 6)


def test_context_from_the_middle_of_a_proof_with_preamble_and_namespace():
    line, column = call_position(MIDDLE)
    ctx = goal_context_from_source(MIDDLE, line, column, heartbeats=200000)
    assert ctx.header == "import Mathlib\nimport Aesop"
    # Everything before the declaration, namespace and open included, is the preamble.
    assert ctx.preamble.startswith("/-! # A file with several theorems -/")
    assert "namespace Demo" in ctx.preamble and "open Nat" in ctx.preamble
    assert "theorem t1" in ctx.preamble and "theorem t2" in ctx.preamble
    # The doc comment and attribute travel with the declaration.
    assert ctx.declaration.startswith("/-- The one we are proving. -/\n@[simp]\ntheorem t3")
    assert "exact hq" not in ctx.declaration and "t4" not in ctx.declaration
    # The heartbeat cap is a command-level option on its own line before the declaration.
    assert ctx.command.startswith("set_option maxHeartbeats 200000 in\n/-- The one")
    assert ctx.sorry_pos == Pos(6, 2)  # line 5 of the declaration, plus the set_option line
    # The same context from llmstep's `context` (file text up to the call).
    assert goal_context_from_context(MIDDLE[: MIDDLE.index("llmstep")], heartbeats=200000) == ctx


def test_context_closes_brackets_open_at_the_call():
    ctx = goal_context_from_source(TERM_HOLE, *call_position(TERM_HOLE))
    assert ctx.declaration.endswith("exact congrArg f (by sorry)")
    assert ctx.sorry_pos == Pos(2, 23)


def test_context_keeps_a_set_option_in_with_its_declaration():
    ctx = goal_context_from_source(SET_OPTION_IN, *call_position(SET_OPTION_IN))
    assert ctx.declaration.startswith("set_option maxRecDepth 1000 in\ntheorem second")
    assert ctx.preamble.strip() == "theorem first : True := trivial"


def test_context_accepts_crlf_and_a_context_that_still_holds_the_call():
    crlf = MULTI_LINE.replace("\n", "\r\n")
    a = goal_context_from_source(crlf, *call_position(MULTI_LINE))
    b = goal_context_from_context(MULTI_LINE[: MULTI_LINE.index('""') + 2])
    assert a == b
    assert a.declaration.endswith("  sorry")


def test_context_is_not_fooled_by_comments_strings_and_char_literals():
    source = (
        'import Mathlib\n\n'
        'def quote : Char := \'"\'\n'
        'def s : String := "-- not a comment /- nor this"\n'
        '/- a block comment\ntheorem fake : False := by\n  sorry\n-/\n'
        'theorem real (n : ℕ) : n = n := by\n'
        '  llmstep ""\n'
    )
    ctx = goal_context_from_source(source, *call_position(source))
    assert ctx.declaration == "theorem real (n : ℕ) : n = n := by\n  sorry"
    assert "theorem fake" in ctx.preamble and ctx.preamble.count("def ") == 2


@pytest.mark.parametrize("kwargs, reason", [
    (dict(), "no context"),
    (dict(context="   "), "no context"),
    (dict(context="import Mathlib\n\n-- a comment mentioning "), "comment"),
    (dict(context="import Mathlib\n\n"), "no declaration"),
    (dict(source="import Mathlib\n", position=(7, 0)), "outside the source"),
    (dict(source="import Mathlib\n", position=(1, 40)), "outside line 1"),
])
def test_context_errors_name_the_problem(kwargs, reason):
    with pytest.raises(ContextError, match=reason):
        build_goal_context(**kwargs)


# --------------------------------------------------------------------------- #
# Verdicts on the simulator

CLASSIFY_FILE = """import Mathlib

theorem goal (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b := by
  llmstep ""
"""


def test_every_outcome_is_classified(pool):
    ctx = goal_context_from_source(CLASSIFY_FILE, *call_position(CLASSIFY_FILE), heartbeats=200000)
    texts = [
        "constructor <;> omega",   # closes the goal
        "constructor",             # progress: two goals
        "skip",                    # runs, changes nothing
        "exat h",                  # parse error: thrown `Lean error`
        "exact no_such_lemma",     # error Lean recovers from: goals [] but not Completed
        "sorry",                   # closes nothing honestly
        "norm_num at h; simp",     # two tactics: `expected end of input`
        "linarith",                # closer that fails on a conjunction? provable here -> closes
    ]
    report = TacticChecker(pool, budget=10).check(ctx, cands(*texts))
    by_text = {c.text: c for c in report.candidates}
    assert [c.text for c in report.candidates] == texts  # input order
    assert report.context_error is None
    assert report.goal == "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b"

    assert by_text["constructor <;> omega"].status == CandidateStatus.CLOSES_GOAL
    assert by_text["constructor <;> omega"].goals == ()
    assert by_text["constructor"].status == CandidateStatus.VALID
    assert by_text["constructor"].goals == ("case left\na b : ℕ\nh : a < b\n⊢ a ≤ b",
                                            "case right\na b : ℕ\nh : a < b\n⊢ 0 < b")
    assert by_text["constructor"].progress
    assert by_text["skip"].status == CandidateStatus.VALID and not by_text["skip"].progress
    assert by_text["exat h"].status == CandidateStatus.INVALID
    assert by_text["exat h"].message == "<input>:1:1: unknown tactic"  # `Lean error:` prefix removed
    assert by_text["exact no_such_lemma"].status == CandidateStatus.INVALID
    assert "Unknown identifier `no_such_lemma`" in by_text["exact no_such_lemma"].message
    assert by_text["sorry"].status == CandidateStatus.INVALID and "sorry" in by_text["sorry"].message
    assert by_text["norm_num at h; simp"].status == CandidateStatus.INVALID
    assert "expected end of input" in by_text["norm_num at h; simp"].message
    assert by_text["linarith"].status == CandidateStatus.CLOSES_GOAL
    assert all(c.time > 0 for c in report.candidates)
    assert report.tactic_requests == len(texts)


def test_a_closer_on_a_false_goal_is_invalid_with_leans_message(pool):
    source = "import Mathlib\n\ntheorem bad : 2 + 2 = 5 := by\n  llmstep \"\"\n"
    report = TacticChecker(pool, budget=10).check(goal_context_from_source(source, 4, 2), cands("norm_num", "decide"))
    assert [c.status for c in report.candidates] == [CandidateStatus.INVALID, CandidateStatus.INVALID]
    assert "norm_num" in report.candidates[0].message
    assert "false" in report.candidates[1].message


def test_classify_needs_completed_and_no_error():
    def tactic(status: str, goals=(), messages=(), sorries=()):
        return TacticResponse(proof_state=7, goals=tuple(goals), proof_status=status, messages=tuple(messages),
                              sorries=tuple(sorries))

    err = Message("error", Pos(0, 0), Pos(0, 0), "type mismatch")
    assert classify(tactic("Completed"), "t", 0, 0.1, None).status == CandidateStatus.CLOSES_GOAL
    assert classify(tactic("Completed", messages=[err]), "t", 0, 0.1, None).status == CandidateStatus.INVALID
    kernel = classify(tactic("Error: kernel type check failed: (kernel) bad"), "t", 0, 0.1, None)
    assert kernel.status == CandidateStatus.INVALID and "kernel type check failed" in kernel.message
    mvars = classify(tactic("Incomplete: contains metavariable(s)"), "t", 0, 0.1, None)
    assert mvars.status == CandidateStatus.INVALID
    with_sorry = classify(tactic("Incomplete: open goals remain", goals=["⊢ p"], sorries=[Sorry("⊢ q", 3)]),
                          "t", 0, 0.1, None)
    assert with_sorry.status == CandidateStatus.INVALID
    thrown = classify(ErrorResponse("Lean error:\n(deterministic) timeout at `whnf`"), "t", 0, 0.1, None)
    assert thrown.status == CandidateStatus.INVALID and thrown.message.startswith("(deterministic) timeout")


def _older_repl_answers(tag: str, stem: str) -> list:
    pairs = {i.stem: o for i, o in older_transcript_pairs()[tag]}
    return [decode_response(b) for b in split_frames(pairs[stem].read_text(encoding="utf-8"))]


def test_an_older_repl_without_proof_status_closes_the_goal_with_a_note():
    """v4.16.0's README transcript: `exact -37` leaves no goal, and the answer has no proofStatus."""
    finished = [r for r in _older_repl_answers("v4.16.0", "readme") if isinstance(r, TacticResponse)][-1]
    verdict = classify(finished, "exact -37", 0, 0.1, None)
    assert verdict.status == CandidateStatus.CLOSES_GOAL
    assert verdict.message == UNVALIDATED and "kernel" in verdict.message


def test_an_older_repl_cannot_pass_off_a_sorry_as_a_closed_goal():
    """v4.3.0 reports no sorries in tactic mode: the text itself is read, as whole tokens only."""
    finished = [r for r in _older_repl_answers("v4.3.0", "readme") if isinstance(r, TacticResponse)][-1]
    assert finished.goals == () and not finished.sorries and finished.proof_status is None
    for cheat in ("sorry", "exact sorry", "admit", "exact (sorryAx _ false)", "exact _root_.sorryAx _ true"):
        verdict = classify(finished, cheat, 0, 0.1, None)
        assert verdict.status == CandidateStatus.INVALID and "sorry" in verdict.message, cheat
    for honest in ("exact sorry_free_lemma h", "exact h.sorry", "exact «sorry» h", "simp -- sorry", 'trace "sorry"'):
        assert classify(finished, honest, 0, 0.1, None).status == CandidateStatus.CLOSES_GOAL, honest


def test_an_older_repl_answer_with_goals_left_is_valid():
    step = next(r for r in _older_repl_answers("v4.9.0", "readme") if isinstance(r, TacticResponse))
    assert step.goals and step.proof_status is None
    verdict = classify(step, "apply Int.natAbs", 0, 0.1, None)
    assert verdict.status == CandidateStatus.VALID and verdict.goals == step.goals


# --------------------------------------------------------------------------- #
# Budget, parallelism, caching, failures

SIMPLE = "import Mathlib\n\ntheorem s (x : ℕ) (h : 0 < x) : 0 < x + 1 := by\n  llmstep \"\"\n"


def test_a_hanging_candidate_does_not_delay_the_answer(pool):
    ctx = goal_context_from_source(SIMPLE, 4, 2)
    budget = 1.5
    started = time.monotonic()
    report = TacticChecker(pool, budget=budget).check(ctx, cands("omega", "sim_hang", "intro y", "exact nope"))
    elapsed = time.monotonic() - started
    assert elapsed < budget + 0.5, elapsed
    statuses = {c.text: c.status for c in report.candidates}
    assert statuses == {"omega": CandidateStatus.CLOSES_GOAL, "sim_hang": CandidateStatus.INVALID,
                        "intro y": CandidateStatus.VALID, "exact nope": CandidateStatus.INVALID}
    hang = report.candidates[1]
    assert hang.message.startswith("timeout:") and "budget" in hang.message
    assert report.timed_out == 1
    # The killed REPL is replaced; the pool serves the next call normally.
    again = TacticChecker(pool, budget=5).check(ctx, cands("omega"))
    assert again.candidates[0].status == CandidateStatus.CLOSES_GOAL
    deadline = time.monotonic() + 5
    while pool.stats().counters.timeouts < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.stats().counters.timeouts >= 1


def test_candidates_run_in_parallel_on_several_workers(fresh_pool):
    p = fresh_pool(max_repls=4)
    ctx = goal_context_from_source(SIMPLE, 4, 2)
    checker = TacticChecker(p, budget=20)
    checker.check(ctx, cands("omega", "simp", "linarith", "positivity"))  # start four warm workers
    started = time.monotonic()
    report = checker.check(ctx, cands(*("sim_delay 0.6" if i % 2 else "sim_delay 0.61" for i in range(4))))
    elapsed = time.monotonic() - started
    assert report.workers == 4
    assert all(c.status == CandidateStatus.VALID for c in report.candidates)
    assert elapsed < 1.6, f"4 x 0.6 s took {elapsed:.2f} s: not parallel"


def test_preamble_env_is_reused_across_calls_in_one_file(fresh_pool):
    p = fresh_pool(max_repls=1)
    source = MIDDLE
    first = goal_context_from_source(source, *call_position(source))
    # A later call in the same proof: the cursor moved, the preamble is unchanged.
    moved = source.replace('  llmstep ""\n  exact hq', '  exact hp\n  llmstep ""')
    second = goal_context_from_source(moved, *call_position(moved))
    assert second.preamble == first.preamble and second.declaration != first.declaration

    checker = TacticChecker(p, budget=10)

    def sent() -> int:
        with p.acquire(first.header, Priority.INTERACTIVE) as worker:
            return worker.process.requests_sent

    r1 = checker.check(first, cands("exact hp", "assumption"))
    after_first = sent()
    r2 = checker.check(second, cands("exact hq", "assumption", "trivial"))
    after_second = sent()
    assert r1.preamble_requests == 1 and r1.preamble_reused == 0
    assert r2.preamble_requests == 0 and r2.preamble_reused == 1
    # The second call sent the declaration and the three tactics, not the preamble.
    assert after_second - after_first == 1 + 3
    assert r2.goal == "case right\np q : Prop\nhp : p\nhq : q\n⊢ q"
    assert [c.status for c in r2.candidates] == [CandidateStatus.CLOSES_GOAL] * 3
    # A header-only cache (cache_preamble=False) re-elaborates the preamble on every call.
    plain = TacticChecker(p, budget=10, cache_preamble=False).check(second, cands("exact hq"))
    assert plain.preamble_requests == 1 and plain.preamble_reused == 0
    assert sent() - after_second == 3


def test_the_same_call_again_reuses_the_goal_proof_state(fresh_pool):
    p = fresh_pool(max_repls=1)
    ctx = goal_context_from_source(MIDDLE, *call_position(MIDDLE))
    checker = TacticChecker(p, budget=10)
    first = checker.check(ctx, cands("exact hp"))
    second = checker.check(ctx, cands("exact hp", "skip"))
    assert first.declaration_requests == 1 and first.declaration_reused == 0
    assert second.declaration_requests == 0 and second.declaration_reused == 1
    assert second.lean_requests == 2 and second.goal == first.goal
    assert [c.status for c in second.candidates] == [CandidateStatus.CLOSES_GOAL, CandidateStatus.VALID]
    assert checker.totals()["declaration"] == 1


def test_a_slow_preamble_answers_unchecked_at_the_budget_and_is_cached_for_the_next_call(fresh_pool):
    p = fresh_pool(max_repls=1)
    source = ("import Mathlib\n\n-- sim: delay 1.5\ntheorem slow : True := trivial\n\n"
              "theorem s (x : ℕ) : x = x := by\n  llmstep \"\"\n")
    ctx = goal_context_from_source(source, 7, 2)
    checker = TacticChecker(p, budget=0.7, prepare_timeout=30)
    started = time.monotonic()
    report = checker.check(ctx, cands("rfl"))
    assert time.monotonic() - started < 1.2
    assert report.candidates[0].status == CandidateStatus.UNCHECKED
    assert "not ready within the checking budget" in report.candidates[0].message
    # The preamble goes on elaborating in the background on the only worker; once
    # that worker is free again its env is cached.
    with p.acquire(ctx.header, Priority.INTERACTIVE, wait=10):
        pass
    report = checker.check(ctx, cands("rfl"))
    assert report.candidates[0].status == CandidateStatus.CLOSES_GOAL
    assert report.preamble_reused == 1


def test_a_crashing_candidate_costs_only_itself(pool):
    report = TacticChecker(pool, budget=10, max_workers=1).check(
        goal_context_from_source(SIMPLE, 4, 2), cands("sim_crash", "omega", "intro z"))
    assert [c.status for c in report.candidates] == [CandidateStatus.INVALID, CandidateStatus.CLOSES_GOAL,
                                                     CandidateStatus.VALID]
    assert "crashed" in report.candidates[0].message


def test_unchecked_when_the_context_cannot_be_located(pool):
    checker = TacticChecker(pool)
    # No goal context at all.
    report = checker.check(None, cands("rfl", "simp"))
    assert [c.status for c in report.candidates] == [CandidateStatus.UNCHECKED, CandidateStatus.UNCHECKED]
    assert "no goal context" in report.context_error
    # The call is not inside a proof: no sorry at that position.
    report = checker.check(goal_context_from_context("import Mathlib\n\n#eval 1 + "), cands("rfl"))
    assert report.candidates[0].status == CandidateStatus.UNCHECKED and "no goal found" in report.context_error
    # The header does not import.
    header_fails = goal_context_from_context("import NonexistentThing\n\ntheorem t : True := by\n  ")
    report = checker.check(header_fails, cands("rfl"))
    assert report.candidates[0].status == CandidateStatus.UNCHECKED and "header failed" in report.context_error
    # An empty candidate list is fine.
    assert TacticChecker(pool).check(goal_context_from_source(SIMPLE, 4, 2), []).candidates == ()


def test_concurrent_checks_of_different_files_do_not_mix(pool):
    a = goal_context_from_source(SIMPLE, 4, 2)
    b = goal_context_from_source(CLASSIFY_FILE, *call_position(CLASSIFY_FILE))
    results = {}

    def run(name, ctx, texts):
        results[name] = TacticChecker(pool, budget=10, max_workers=2).check(ctx, cands(*texts))

    threads = [threading.Thread(target=run, args=("a", a, ["omega", "intro y"])),
               threading.Thread(target=run, args=("b", b, ["constructor", "constructor <;> omega"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["a"].goal.endswith("⊢ 0 < x + 1")
    assert results["b"].goal.endswith("⊢ a ≤ b ∧ 0 < b")
    assert [c.status for c in results["b"].candidates] == [CandidateStatus.VALID, CandidateStatus.CLOSES_GOAL]


def test_read_goal_gives_leans_goal_and_leaves_the_proof_state_for_the_check(fresh_pool):
    checker = TacticChecker(fresh_pool(max_repls=1), budget=10)
    ctx = goal_context_from_source(SIMPLE, 4, 2)
    reading = checker.read_goal(ctx)
    assert reading.error is None
    assert reading.goal == "x : ℕ\nh : 0 < x\n⊢ 0 < x + 1"
    report = checker.check(ctx, cands("omega"))
    assert report.candidates[0].status == CandidateStatus.CLOSES_GOAL
    assert report.declaration_requests == 0 and report.declaration_reused == 1


def test_read_goal_says_why_there_is_no_goal(pool):
    reading = TacticChecker(pool, budget=10).read_goal(goal_context_from_context("import Mathlib\n\n#eval 1 + "))
    assert reading.goal is None and "no goal found" in reading.error


# --------------------------------------------------------------------------- #
# Proof paths: a session's states, rebuilt on whichever REPL runs them

CONJ = "import Mathlib\n\ntheorem c (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b := by\n  llmstep \"\"\n"


def test_a_proof_path_is_rebuilt_from_the_deepest_state_its_repl_holds(fresh_pool):
    checker = TacticChecker(fresh_pool(max_repls=1), budget=10)
    path = ProofPath(goal_context_from_source(CONJ, 4, 2), ("constructor", "skip"))
    first = checker.check(path, cands("omega"))
    assert first.replayed_tactics == 2 and first.declaration_requests == 1
    assert first.goal == "case left\na b : ℕ\nh : a < b\n⊢ a ≤ b\n\ncase right\na b : ℕ\nh : a < b\n⊢ 0 < b"
    assert first.candidates[0].status == CandidateStatus.VALID
    deeper = checker.check(path.then("skip"), cands("omega"))
    assert deeper.replayed_tactics == 1 and deeper.declaration_requests == 0
    assert deeper.candidates[0].status == CandidateStatus.VALID and deeper.candidates[0].progress
    # keep_states: the states the candidates reach are kept, so the next step from one costs no replay.
    checker.check(path, cands("intro z"), keep_states=True)
    onward = checker.check(path.then("intro z"), cands("omega"))
    assert onward.replayed_tactics == 0 and onward.lean_requests == 1


def test_a_path_that_no_longer_replays_is_a_context_error(pool):
    report = TacticChecker(pool, budget=10).check(ProofPath(goal_context_from_source(CONJ, 4, 2), ("frobnicate",)),
                                                  cands("omega"))
    assert report.candidates[0].status == CandidateStatus.UNCHECKED
    assert "could not be rebuilt: tactic 1 of its path, 'frobnicate', now fails" in report.context_error
