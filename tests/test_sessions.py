"""Proof sessions: start from each origin, step and branch, attempt in parallel, survive lost REPLs, hold limits.

Every session runs on real simulated REPLs (``python -m leanstep.sim``) through
the real pool and checker. Faults are injected the ways REPLs really go:
killed from outside, crashing at their Nth request, hanging on a tactic, and
recycled after their maximum of uses. Whatever happens to the REPLs, an agent
must see the same states, goals and verdicts as on a pool where nothing
happens; only the latency may differ.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from leanstep.check.sessions import (
    BadRequest,
    FromCode,
    FromPosition,
    FromStatement,
    NotProved,
    SessionLimitReached,
    SessionLimits,
    SessionNotFound,
    SessionService,
    StateLimitReached,
    StateNotFound,
    StateStatus,
    StepResult,
)
from leanstep.check.tactics import CandidateStatus, TacticChecker
from leanstep.repl.pool import Priority, ReplPool
from leanstep.repl.protocol import CommandRequest, CommandResponse
from server_fixtures import sim_costs, sim_pool

HEADER = "import Mathlib"
ME, OTHER = "owner-a", "owner-b"

TWO_THEOREMS = """import Mathlib

/-- A helper the second theorem uses. -/
theorem helper (x : ℕ) : x + 0 = x := by
  sorry

theorem pair (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  · sorry
  · exact sorry
"""
STATEMENT = "theorem goal (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b"
GOAL = "a b : ℕ\nh : a < b\n⊢ a ≤ b ∧ 0 < b"
IN_PROOF = """import Mathlib

theorem at_call (n : ℕ) (h : 0 < n) : 0 < n + 1 := by
  have h1 : 0 < n := h
  omega
"""


class FakeClock:
    """The sessions' clock, moved by hand: TTLs are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def started_pool(monkeypatch: pytest.MonkeyPatch, max_repls: int = 2, *, crash_after: int = 0, **overrides: object
                 ) -> ReplPool:
    sim_costs(monkeypatch)
    if crash_after:
        monkeypatch.setenv("LEANSTEP_SIM_CRASH_AFTER", str(crash_after))
    else:
        monkeypatch.delenv("LEANSTEP_SIM_CRASH_AFTER", raising=False)
    pool = sim_pool(max_repls=max_repls, **overrides)
    pool.start()
    return pool


def service(pool: ReplPool, clock: FakeClock | None = None, **limits: object) -> SessionService:
    checker = TacticChecker(pool, budget=20, prepare_timeout=20)
    settings = SessionLimits(**{"timeout": 20.0, **limits})  # type: ignore[arg-type]
    return SessionService(checker, settings, clock=clock or FakeClock())


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReplPool]]:
    made: list[ReplPool] = []
    yield made
    for pool in made:
        pool.shutdown()


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch, pools: list[ReplPool]):
    """``make(max_repls, crash_after=..., max_uses=..., **limits)``: a session service on a fresh sim pool."""

    def build(max_repls: int = 2, *, crash_after: int = 0, clock: FakeClock | None = None,
              pool_settings: dict[str, object] | None = None, **limits: object) -> SessionService:
        pool = started_pool(monkeypatch, max_repls, crash_after=crash_after, **(pool_settings or {}))
        pools.append(pool)
        return service(pool, clock, **limits)

    return build


@pytest.fixture
def sessions(make) -> SessionService:
    return make()


@dataclass(frozen=True)
class Seen:
    """What an agent sees of one step: everything but the time it took."""

    tactic: str
    status: CandidateStatus
    state: int | None
    goals: tuple[str, ...]
    message: str | None


def seen(result: StepResult) -> Seen:
    return Seen(result.tactic, result.status, result.state, result.goals, result.message)


def prove_by_script(sessions: SessionService, between: Callable[[], object] = lambda: None) -> list[Seen]:
    """An agent's session: a statement, a branch that fails, a branch that works, a multi-attempt, a proof.

    ``between`` runs after every step (to kill REPLs there).
    """
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    out: list[Seen] = []

    def step(state: int | None, *tactics: str) -> int | None:
        assert state is not None
        results = sessions.attempt(view.id, state, tactics, ME)
        out.extend(seen(r) for r in results)
        between()
        return results[0].state

    split = step(0, "constructor")
    step(split, "exact nope")
    step(0, "intro x")  # a second branch from the root
    left = step(split, "exact Nat.le_of_lt h")
    deeper = step(left, "skip")
    step(deeper, "frobnicate", "positivity", "omega", "skip")
    done = step(deeper, "omega")
    script = sessions.proof(view.id, done, ME)  # type: ignore[arg-type]
    assert script.tactics == ("constructor", "exact Nat.le_of_lt h", "skip", "omega")
    return out


# --------------------------------------------------------------------------- #
# Starting


def test_code_with_sorries_gives_one_root_state_per_sorry_with_leans_goals(sessions: SessionService) -> None:
    view = sessions.start(FromCode(TWO_THEOREMS), ME)
    assert view.roots == (0, 1, 2)
    assert [s.goals for s in view.states] == [
        ("x : ℕ\n⊢ x + 0 = x",),
        ("case left\np q : Prop\nhp : p\nhq : q\n⊢ p",),
        ("case right\np q : Prop\nhp : p\nhq : q\n⊢ q",),
    ]
    assert all(s.status == StateStatus.OPEN and s.parent is None and s.tactic is None for s in view.states)
    assert len(view.id) >= 24


def test_a_later_theorem_sees_the_declarations_above_it(sessions: SessionService) -> None:
    code = ("import Mathlib\n\ndef seven : ℕ := 7\n\ntheorem uses_it : seven = 7 := by\n  sorry\n")
    view = sessions.start(FromCode(code), ME)
    # `exact nope` names nothing declared; `exact seven` would be accepted only if `seven` is known
    assert sessions.step(view.id, 0, "exact nope", ME).status == CandidateStatus.INVALID
    assert sessions.step(view.id, 0, "rfl", ME).status == CandidateStatus.CLOSES_GOAL


def test_a_position_in_a_file_gives_the_goal_there_as_suggest_reads_it(sessions: SessionService) -> None:
    view = sessions.start(FromPosition(IN_PROOF, 5, 2), ME)
    assert view.states[0].goals == ("n : ℕ\nh h1 : 0 < n\n⊢ 0 < n + 1",)
    assert sessions.step(view.id, 0, "omega", ME).status == CandidateStatus.CLOSES_GOAL


def test_a_statement_under_a_header_gives_its_goal(sessions: SessionService) -> None:
    for statement in (STATEMENT, STATEMENT + " :=", STATEMENT + " := by"):
        view = sessions.start(FromStatement(statement, HEADER), ME)
        assert view.states[0].goals == (GOAL,)


@pytest.mark.parametrize("origin, reason", [
    (FromCode("import Mathlib\n\ntheorem t : True := trivial\n"), "no `sorry`"),
    (FromCode("import Mathlib\n\n-- sorry\ntheorem t : True := trivial /- sorry -/\n"), "no `sorry`"),
    (FromCode("import NonexistentThing\n\ntheorem t : True := by\n  sorry\n"), "header failed"),
    (FromPosition(IN_PROOF, 40, 0), "outside the source"),
    (FromPosition("import Mathlib\n\n#eval 1 + 1\n", 3, 9), "no goal found"),
    (FromStatement("theorem t (a : ℕ : a = a", HEADER), "bracket open"),
    (FromStatement("", HEADER), "no statement"),
    (FromStatement(STATEMENT, "import Mathlib\ndef x := 1"), "only imports"),
])
def test_an_origin_with_no_goal_to_reach_is_refused_saying_why(sessions: SessionService, origin: object,
                                                                reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        sessions.start(origin, ME)  # type: ignore[arg-type]
    assert sessions.stats().open == 0


# --------------------------------------------------------------------------- #
# Stepping and branching


def test_a_step_makes_a_new_state_and_leaves_the_old_one_as_it_was(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    split = sessions.step(view.id, 0, "constructor", ME)
    assert split.status == CandidateStatus.VALID and split.state == 1
    assert split.goals == ("case left\na b : ℕ\nh : a < b\n⊢ a ≤ b", "case right\na b : ℕ\nh : a < b\n⊢ 0 < b")
    # The root is unchanged: another tactic on it starts another branch.
    other = sessions.step(view.id, 0, "refine ⟨?_, ?_⟩", ME)
    assert other.state == 2
    tree = sessions.get(view.id, ME)
    assert tree.states[0].goals == (GOAL,)
    assert [(s.id, s.parent, s.tactic, s.depth) for s in tree.states] == [
        (0, None, None, 0), (1, 0, "constructor", 1), (2, 0, "refine ⟨?_, ?_⟩", 1)]


def test_a_refused_tactic_makes_no_state_and_carries_leans_message(sessions: SessionService) -> None:
    view = sessions.start(FromStatement("theorem bad : 2 + 2 = 5", HEADER), ME)
    result = sessions.step(view.id, 0, "norm_num", ME)
    assert result.status == CandidateStatus.INVALID and result.state is None
    assert "norm_num" in (result.message or "")
    unknown = sessions.step(view.id, 0, "frobnicate", ME)
    assert unknown.status == CandidateStatus.INVALID and "unknown tactic" in (unknown.message or "")
    assert len(sessions.get(view.id, ME).states) == 1


def test_a_tactic_run_twice_on_a_state_is_the_same_state_answered_without_lean(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    first = sessions.step(view.id, 0, "constructor", ME)
    steps = sessions.stats().steps
    again = sessions.step(view.id, 0, "constructor", ME)
    assert again.state == first.state and again.goals == first.goals and again.time == 0.0
    assert sessions.stats().steps == steps
    assert len(sessions.get(view.id, ME).states) == 2


def test_a_proof_is_the_path_from_the_root_and_lean_accepts_it(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    split = sessions.step(view.id, 0, "constructor", ME)
    with pytest.raises(NotProved, match="still has 2 goal"):
        sessions.proof(view.id, split.state, ME)  # type: ignore[arg-type]
    left = sessions.step(view.id, split.state, "exact Nat.le_of_lt h", ME)  # type: ignore[arg-type]
    done = sessions.step(view.id, left.state, "omega", ME)  # type: ignore[arg-type]
    assert done.status == CandidateStatus.CLOSES_GOAL
    assert sessions.get(view.id, ME).states[done.state].status == StateStatus.PROVED  # type: ignore[index]
    script = sessions.proof(view.id, done.state, ME)  # type: ignore[arg-type]
    assert script.root == 0 and script.tactics == ("constructor", "exact Nat.le_of_lt h", "omega")
    # The script in place of the sorry is a whole proof Lean accepts.
    body = "\n".join("  " + line for line in script.text.splitlines())
    with sessions.checker.pool.acquire(HEADER, Priority.INTERACTIVE) as worker:
        response = worker.run(CommandRequest(f"{STATEMENT} := by\n{body}", env=worker.header_env), 10)
    assert isinstance(response, CommandResponse) and not response.errors and not response.sorries


def test_a_state_that_is_not_in_the_session_is_not_found(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    for state in (1, -1, 10**6):
        with pytest.raises(StateNotFound, match="no state"):
            sessions.step(view.id, state, "omega", ME)
    with pytest.raises(StateNotFound):
        sessions.proof(view.id, 3, ME)


def test_bad_tactics_are_refused_before_any_repl_runs(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    steps = sessions.stats().steps
    for tactics in ([], ["omega", "  "]):
        with pytest.raises(BadRequest):
            sessions.attempt(view.id, 0, tactics, ME)
    with pytest.raises(BadRequest, match="timeout: 0.01 s is below the server's minimum"):
        sessions.step(view.id, 0, "omega", ME, timeout=0.01)
    assert sessions.stats().steps == steps


# --------------------------------------------------------------------------- #
# Multi-attempt


def test_an_attempt_answers_every_tactic_in_order_and_adds_the_accepted_ones(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    tactics = ["omega", "constructor", "exact nope", "frobnicate", "skip", "omega", "intro z",
               "constructor <;> omega"]
    results = sessions.attempt(view.id, 0, tactics, ME)
    assert [r.tactic for r in results] == tactics
    assert [r.status for r in results] == [
        CandidateStatus.CLOSES_GOAL, CandidateStatus.VALID, CandidateStatus.INVALID, CandidateStatus.INVALID,
        CandidateStatus.VALID, CandidateStatus.CLOSES_GOAL, CandidateStatus.VALID, CandidateStatus.CLOSES_GOAL]
    assert results[0].state == results[5].state  # the same tactic twice: one run, one state
    made = {r.state for r in results if r.state is not None}
    assert made == {1, 2, 3, 4, 5}
    assert all(s.parent == 0 for s in sessions.get(view.id, ME).states[1:])


def test_an_attempt_runs_its_tactics_on_several_repls_at_once(make) -> None:
    sessions = make(max_repls=3)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    pool = sessions.checker.pool
    pool.wait_warm(30)
    sent_before = _requests_by_pid(pool)
    results = sessions.attempt(view.id, 0, [f"sim_delay 0.{i}5" for i in range(1, 7)], ME)
    assert all(r.status == CandidateStatus.VALID for r in results)
    sent_after = _requests_by_pid(pool)
    ran_tactics = [pid for pid in sent_after if sent_after[pid] > sent_before.get(pid, 0)]
    assert len(ran_tactics) >= 2, (sent_before, sent_after)


def _requests_by_pid(pool: ReplPool) -> dict[int, int]:
    with pool._cond:  # the workers' own counters, read under the pool's lock
        return {w.process.pid: w.process.requests_sent for w in pool._workers
                if w.process is not None and w.process.pid is not None}


def test_too_many_tactics_in_one_attempt_are_refused(make) -> None:
    sessions = make(max_tactics=3)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    with pytest.raises(BadRequest, match="4 tactics in one attempt, more than the 3 allowed"):
        sessions.attempt(view.id, 0, ["omega", "simp", "decide", "skip"], ME)


# --------------------------------------------------------------------------- #
# Lost REPLs: the agent sees the same session, only later


NO_RESTART_LIMIT = {"max_restarts_per_minute": 1000}


def test_repls_killed_after_every_step_change_nothing_the_agent_sees(make) -> None:
    reference = prove_by_script(make())
    sessions = make(pool_settings=NO_RESTART_LIMIT)
    pool = sessions.checker.pool

    def kill_every_repl() -> None:
        pool.wait_warm(30)
        for pid in pool.pids():
            os.kill(pid, signal.SIGKILL)

    assert prove_by_script(sessions, between=kill_every_repl) == reference
    assert sessions.stats().replayed_tactics >= 6  # each deeper state was rebuilt from its root


def test_repls_that_crash_at_their_eighth_request_change_nothing_the_agent_sees(make) -> None:
    """A crash in the middle of a step: the step is run again on a new REPL, after its state is rebuilt."""
    reference = prove_by_script(make())
    sessions = make(max_repls=1, crash_after=8, pool_settings=NO_RESTART_LIMIT)
    assert prove_by_script(sessions) == reference
    assert sessions.checker.pool.stats().counters.lost >= 1
    assert sessions.stats().replayed_tactics >= 1


def test_repls_recycled_after_three_uses_change_nothing_the_agent_sees(make) -> None:
    reference = prove_by_script(make())
    sessions = make(pool_settings={"max_uses": 3})
    assert prove_by_script(sessions) == reference
    assert sessions.checker.pool.stats().counters.recycled_uses >= 2


def test_a_hanging_tactic_times_out_alone_and_the_session_goes_on(make) -> None:
    sessions = make(max_repls=1)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    split = sessions.step(view.id, 0, "constructor", ME)
    hang = sessions.step(view.id, split.state, "sim_hang", ME, timeout=1.0)  # type: ignore[arg-type]
    assert hang.status == CandidateStatus.INVALID and hang.state is None
    assert (hang.message or "").startswith("timeout:")
    # Its REPL was killed; the split state is rebuilt on the replacement and stepping goes on.
    left = sessions.step(view.id, split.state, "omega", ME)  # type: ignore[arg-type]
    assert left.status == CandidateStatus.VALID and left.goals == ("case right\na b : ℕ\nh : a < b\n⊢ 0 < b",)
    assert sessions.checker.pool.stats().counters.timeouts == 1
    assert sessions.stats().replayed_tactics >= 1


def test_a_tactic_that_crashes_its_repl_every_time_is_invalid_and_the_session_goes_on(sessions: SessionService
                                                                                       ) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    crash = sessions.step(view.id, 0, "sim_crash", ME)
    assert crash.status == CandidateStatus.INVALID and "crashed on this tactic 2 times" in (crash.message or "")
    assert sessions.step(view.id, 0, "constructor <;> omega", ME).status == CandidateStatus.CLOSES_GOAL


def test_concurrent_steps_on_one_session_build_one_consistent_tree(make) -> None:
    sessions = make(max_repls=3)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    tactics = ["constructor", "skip", "intro z", "constructor"] * 3
    results: list[StepResult] = []
    lock = threading.Lock()

    def run(tactic: str) -> None:
        result = sessions.step(view.id, 0, tactic, ME)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(t,)) for t in tactics]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    by_tactic = {r.tactic: {x.state for x in results if x.tactic == r.tactic} for r in results}
    assert all(len(states) == 1 for states in by_tactic.values()), by_tactic
    tree = sessions.get(view.id, ME)
    assert len(tree.states) == 4 and sorted(s.tactic or "" for s in tree.states[1:]) == ["constructor", "intro z",
                                                                                         "skip"]


# --------------------------------------------------------------------------- #
# Limits and owners


def test_an_idle_session_expires_after_its_ttl_and_use_keeps_it_alive(make) -> None:
    clock = FakeClock()
    sessions = make(clock=clock, ttl=60.0)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    clock.now += 50
    assert sessions.get(view.id, ME).expires_in == pytest.approx(60.0)  # reading it counts as use
    clock.now += 59
    sessions.step(view.id, 0, "constructor", ME)
    clock.now += 61
    with pytest.raises(SessionNotFound, match="expired"):
        sessions.get(view.id, ME)
    assert sessions.stats().expired == 1 and sessions.stats().open == 0


def test_listing_an_owners_sessions_neither_keeps_them_alive_nor_shows_expired_ones(make) -> None:
    clock = FakeClock()
    sessions = make(clock=clock, ttl=60.0)
    old = sessions.start(FromStatement(STATEMENT, HEADER), ME).id
    clock.now += 40
    new = sessions.start(FromStatement(STATEMENT, HEADER), ME).id
    sessions.start(FromStatement(STATEMENT, HEADER), "someone else")
    assert [(s.id, s.expires_in) for s in sessions.owned(ME)] == [(old, pytest.approx(20.0)), (new, 60.0)]
    clock.now += 30  # the listing above was no use of them: the first is now idle for 70 s
    assert [s.id for s in sessions.owned(ME)] == [new]
    assert sessions.stats().expired == 1


def test_the_server_cap_on_sessions_is_a_clear_refusal_and_frees_on_close(make) -> None:
    sessions = make(max_sessions=2, max_per_owner=5)
    first = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    sessions.start(FromStatement(STATEMENT, HEADER), OTHER)
    with pytest.raises(SessionLimitReached, match="maximum of 2 open sessions"):
        sessions.start(FromStatement(STATEMENT, HEADER), ME)
    sessions.close(first.id, ME)
    sessions.start(FromStatement(STATEMENT, HEADER), ME)


def test_the_cap_per_owner_leaves_other_owners_alone(make) -> None:
    clock = FakeClock()
    sessions = make(clock=clock, max_per_owner=2, ttl=60.0)
    for _ in range(2):
        sessions.start(FromStatement(STATEMENT, HEADER), ME)
    with pytest.raises(SessionLimitReached, match="this API key holds its maximum of 2"):
        sessions.start(FromStatement(STATEMENT, HEADER), ME)
    sessions.start(FromStatement(STATEMENT, HEADER), OTHER)
    clock.now += 61  # idle sessions expire and free their slots
    sessions.start(FromStatement(STATEMENT, HEADER), ME)


def test_the_cap_on_states_counts_the_states_a_step_could_add(make) -> None:
    sessions = make(max_states=3)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    sessions.step(view.id, 0, "constructor", ME)
    with pytest.raises(StateLimitReached, match="holds 2 states .* of the 3 allowed"):
        sessions.attempt(view.id, 0, ["skip", "intro z"], ME)
    assert sessions.step(view.id, 0, "skip", ME).state == 2
    with pytest.raises(StateLimitReached):
        sessions.step(view.id, 0, "intro z", ME)
    assert sessions.step(view.id, 0, "constructor", ME).state == 1  # known already: adds nothing
    with pytest.raises(StateLimitReached, match="2 `sorry`s, more than the 1 states"):
        make(max_states=1).start(FromCode(TWO_THEOREMS.replace("  · exact sorry\n", "")), ME)


def test_concurrent_starts_cannot_exceed_the_cap_per_owner(make) -> None:
    sessions = make(max_per_owner=3)
    outcomes: list[str] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            sessions.start(FromStatement(STATEMENT, HEADER), ME)
            outcome = "started"
        except SessionLimitReached:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["refused"] * 5 + ["started"] * 3
    assert sessions.stats().open == 3


def test_concurrent_attempts_cannot_exceed_the_cap_on_states(make) -> None:
    sessions = make(max_repls=3, max_states=5)
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    refused: list[StateLimitReached] = []

    def attempt(tactics: list[str]) -> None:
        try:
            sessions.attempt(view.id, 0, tactics, ME)
        except StateLimitReached as exc:
            refused.append(exc)

    threads = [threading.Thread(target=attempt, args=(["sim_delay 0.2", f"intro a{i}", f"intro b{i}"],))
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(sessions.get(view.id, ME).states) <= 5
    assert refused, "three attempts of 3 new states each cannot all fit in 4 free slots"


def test_another_owner_cannot_see_or_touch_a_session(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    done = sessions.step(view.id, 0, "constructor <;> omega", ME)
    calls = [
        lambda: sessions.get(view.id, OTHER),
        lambda: sessions.step(view.id, 0, "omega", OTHER),
        lambda: sessions.attempt(view.id, 0, ["omega"], OTHER),
        lambda: sessions.proof(view.id, done.state, OTHER),  # type: ignore[arg-type]
        lambda: sessions.close(view.id, OTHER),
    ]
    for call in calls:
        with pytest.raises(SessionNotFound) as refused:
            call()
        with pytest.raises(SessionNotFound) as unknown:
            sessions.get("x" * 24, OTHER)
        assert str(refused.value).replace(view.id, "x" * 24) == str(unknown.value)  # nothing tells them apart
    assert len(sessions.get(view.id, ME).states) == 2  # untouched


def test_a_closed_session_is_gone(sessions: SessionService) -> None:
    view = sessions.start(FromStatement(STATEMENT, HEADER), ME)
    sessions.close(view.id, ME)
    with pytest.raises(SessionNotFound):
        sessions.step(view.id, 0, "omega", ME)
    with pytest.raises(SessionNotFound):
        sessions.close(view.id, ME)
    assert sessions.stats().closed == 1
