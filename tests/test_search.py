"""Best-first search on proof sessions: the planned proof through dead ends, the budgets, a REPL that crashes
or hangs mid-search, determinism, parallel expansion, and the tiny model on the same path.

Lean is the simulated REPL (real processes through the real pool and the real session service); the model is
the scripted backend: proposals read from a file, keyed by goal, dead ends included.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import write_jsonl

from leanstep.generate import Candidate, GenerationRequest, GeneratorSettings, make_generator
from leanstep.generate.batching import RequestAbandoned
from leanstep.prove.prover import ProveRequest
from leanstep.server.services import build_services
from server_fixtures import sim_config


HEADER = "import Mathlib"
PLAN = "theorem plan : ∀ n : ℕ, 1 = 2 ∨ n = n"
# The plan is intro n; right; rfl. Each state's proposals, best score first; the dead ends come first:
# exfalso leaves False, left leaves 1 = 2, and nothing proves either.
PROPOSALS = [
    {"goal": "⊢ ∀ n : ℕ, 1 = 2 ∨ n = n", "tactics": [{"text": "exfalso", "score": -0.1},
                                                     {"text": "intro n", "score": -0.2}]},
    {"goal": "⊢ False", "tactics": ["trivial", "decide"]},
    {"goal": "⊢ 1 = 2 ∨ n = n", "tactics": [{"text": "left", "score": -0.1}, {"text": "right", "score": -0.3}]},
    {"goal": "⊢ 1 = 2", "tactics": ["decide", "norm_num"]},
    {"goal": "⊢ n = n", "tactics": ["rfl"]},
]
FAULTS = {"goal": "⊢ 1 = 2 ∨ n = n", "tactics": [{"text": "sim_crash", "score": -0.01},
                                               {"text": "sim_hang", "score": -0.02}]}


def script(tmp_path: Path, *entries: dict) -> str:
    return str(write_jsonl(tmp_path / "proposals.jsonl", *entries))


def prover(generator=None, **settings):
    """The server's prover (build_services), on a sim pool; closed by the caller."""
    config = sim_config(**{"check_timeout": 1.5, "search_width": 1, **settings})
    return build_services(config, generator=generator)


def prove(services, **request):
    return services.prover.prove(ProveRequest(strategy="search", header=HEADER, statement=PLAN, **request))


def test_search_finds_the_planned_proof_through_dead_ends(tmp_path):
    generator = make_generator(GeneratorSettings(backend="scripted", script=script(tmp_path, *PROPOSALS)))
    services = prover(generator)
    try:
        result = prove(services)
    finally:
        services.close()
    assert result.proved and result.strategy == "search"
    assert result.proof == f"{PLAN} := by\n  intro n\n  right\n  rfl"
    # root, the exfalso dead end, intro n, the left dead end, then right: best first by summed score
    assert result.expansions == 5
    assert result.check.result.verdict == "valid" and result.check.result.trust == "strict"
    assert result.timings.total_ms >= result.timings.checking_ms > 0


def test_search_survives_a_crashing_and_a_hanging_repl_mid_search(tmp_path):
    generator = make_generator(GeneratorSettings(backend="scripted",
                                                 script=script(tmp_path, FAULTS, *PROPOSALS)))
    services = prover(generator)
    try:
        result = prove(services)
        counters = services.pool.stats().counters
    finally:
        services.close()
    assert result.proved and result.proof.endswith("intro n\n  right\n  rfl")
    assert counters.lost + counters.timeouts >= 2  # the crashed REPL and the hanging one were both replaced


def test_search_stops_at_its_expansion_budget(tmp_path):
    generator = make_generator(GeneratorSettings(backend="scripted", script=script(tmp_path, *PROPOSALS)))
    services = prover(generator)
    try:
        result = prove(services, expansions=3)
    finally:
        services.close()
    assert not result.proved and result.stopped == "budget" and result.expansions == 3


def test_search_stops_at_its_wall_clock_budget(tmp_path):
    slow = [{"goal": "⊢ ∀ n : ℕ, 1 = 2 ∨ n = n", "tactics": ["sim_delay 30", "intro n"]},
            {"goal": "⊢ 1 = 2 ∨ n = n", "tactics": ["sim_delay 30", "right"]}]
    generator = make_generator(GeneratorSettings(backend="scripted", script=script(tmp_path, *slow)))
    services = prover(generator, check_timeout=30, min_timeout=0.5)
    try:
        result = prove(services, timeout=2.0)
    finally:
        services.close()
    assert not result.proved and result.stopped == "timeout"
    assert result.timings.total_ms < 10_000  # the 30-second tactic was cut at the request's 2 s


def test_search_is_deterministic(tmp_path):
    generator = make_generator(GeneratorSettings(backend="scripted", script=script(tmp_path, *PROPOSALS)))
    runs = []
    for width in (2, 2):
        services = prover(generator, search_width=width)
        try:
            runs.append(prove(services, seed=7))
        finally:
            services.close()
    first, second = runs
    assert (first.proof, first.expansions) == (second.proof, second.expansions)
    assert first.proved


class Chain:
    """A test double for the model: every goal gets three tactics that take half a second and change nothing,
    and `intro`, which makes the next state."""

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        return [Candidate("sim_delay 0.5" + "0" * k, -0.1 * k) for k in range(3)] + [Candidate("intro", -1.0)]


def test_checking_candidates_in_parallel_expands_more_states_in_the_same_time():
    statement = "theorem chain : ∀ a b c d e f g h i j : ℕ, a = a"
    expansions = {}
    for repls in (1, 4):
        services = prover(Chain(), max_repls=repls, check_timeout=10, min_timeout=0.5)
        try:
            result = services.prover.prove(ProveRequest(strategy="search", statement=statement, timeout=3.0))
        finally:
            services.close()
        expansions[repls] = result.expansions
    assert expansions[4] >= expansions[1] + 2, expansions


CHAIN = "theorem chain : ∀ a b c d e f g h i j : ℕ, a = a"


class Intros:
    """A test double for the model: `intro` for every goal (each expansion makes the next state of the chain), and
    from its ``leaves_at``-th call on, the error a batched backend raises when the caller left while it waited."""

    def __init__(self, leaves_at: int | None = None) -> None:
        self.calls = 0
        self.leaves_at = leaves_at

    def generate(self, request: GenerationRequest) -> list[Candidate]:
        self.calls += 1
        if self.leaves_at is not None and self.calls >= self.leaves_at:
            raise RequestAbandoned("the client left before its generation started")
        return [Candidate("intro", -0.1)]


@pytest.mark.parametrize(("noticed", "generations", "expansions"), [
    ("between expansions", 2, 2),  # the third is not started
    ("after a generation, before its tactics ran", 3, 2),
    ("by the batched generation", 3, 2),
])
def test_a_search_whose_caller_left_stops_at_once_and_closes_its_session(noticed, generations, expansions):
    model = Intros(leaves_at=3 if noticed == "by the batched generation" else None)
    services = prover(model)
    left = {"between expansions": lambda: services.sessions.stats().steps >= 2,
            "after a generation, before its tactics ran": lambda: model.calls >= 3}.get(noticed)
    try:
        request = ProveRequest(strategy="search", statement=CHAIN, expansions=100, abandoned=left)
        result = services.prover.prove(request)
        sessions = services.sessions.stats()
        with pytest.raises(RequestAbandoned, match="client left"):  # what a client's door answers it with
            services.prover.answer(replace(request, abandoned=lambda: True))
        after_answer = services.sessions.stats()
    finally:
        services.close()
    assert not result.proved and result.stopped == "client_left"
    assert (model.calls, result.expansions, sessions.steps) == (generations, expansions, 2)
    assert sessions.open == 0 and sessions.closed == sessions.started == 1
    assert after_answer == sessions  # a caller gone before the answer's proving started costs nothing


def test_auto_searches_then_writes_whole_proofs(tmp_path):
    whole = {"theorem": "plan", "proofs": [f"{PLAN} := by\n  intro n\n  exact Or.inr rfl"]}
    generator = make_generator(GeneratorSettings(backend="scripted",
                                                 script=script(tmp_path, PROPOSALS[0], whole)))
    services = prover(generator)
    try:
        result = services.prover.prove(ProveRequest(strategy="auto", header=HEADER, statement=PLAN))
    finally:
        services.close()
    assert result.proved and result.strategy == "whole" and result.tried == ("search", "whole")
    assert result.expansions >= 1 and result.samples == 1


def test_the_tiny_model_runs_the_search_path(tiny_causal):
    generator = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep", num_samples=4,
                                                 temperatures=(1.0,), max_new_tokens=6))
    services = prover(generator)
    try:
        result = prove(services, expansions=3, seed=1)
    finally:
        services.close()
    assert 1 <= result.expansions <= 3 and result.timings.generation_ms > 0


@pytest.mark.parametrize("strategy", ["search", "whole"])
def test_a_goal_at_a_position_is_searched_from_where_the_call_is(tmp_path, strategy):
    source = f"{HEADER}\n\n{PLAN} := by\n  intro n\n  sorry\n"
    entries = [*PROPOSALS, {"theorem": "plan", "proofs": ["right\nrfl"]}]
    generator = make_generator(GeneratorSettings(backend="scripted", script=script(tmp_path, *entries)))
    services = prover(generator)
    try:
        result = services.prover.prove(ProveRequest(strategy=strategy, source=source, position=(5, 2)))
    finally:
        services.close()
    assert result.proved and result.proof == "right\n  rfl"
