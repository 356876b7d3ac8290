"""Proving whole proofs: placing proofs at their target, checking them, repair rounds with Lean's errors,
pass@k evaluation, ``POST /prove`` and ``leanstep prove`` / ``leanstep eval`` as users run them.

Lean is the simulated REPL (real processes through the real pool); the model is the scripted backend
(proposals from a file, deterministic) or the hint list, and a tiny Hugging Face model for the same path.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from conftest import ROOT, write_jsonl
from leanstep.check.source import build_goal_context
from leanstep.check.verify import Verifier
from leanstep.generate import GenerationRequest, GeneratorSettings, get_proof_format, make_generator
from leanstep.generate.batching import RequestAbandoned
from leanstep.prove.checking import ProofChecker
from leanstep.prove.evaluate import Evaluation, Problem, pass_at_k
from leanstep.prove.prover import ProveRequest, Prover
from leanstep.prove.target import Target, TargetError, open_goals
from server_fixtures import SlowChain, running_server, sim_config, sim_pool, wait_until


HEADER = "import Mathlib"
STATEMENT = "theorem double (x : ℕ) (h : 2 < x) : 4 < 2 * x"


class Recording:
    """A generator that remembers every request it was asked (wraps a real backend); from its ``leaves_at``-th
    request on, it raises what a batched backend raises when the caller left while the request waited."""

    def __init__(self, inner, leaves_at: int | None = None) -> None:
        self.inner = inner
        self.leaves_at = leaves_at
        self.requests: list[GenerationRequest] = []
        self.lock = threading.Lock()

    def generate(self, request: GenerationRequest):
        with self.lock:
            self.requests.append(request)
            if self.leaves_at is not None and len(self.requests) >= self.leaves_at:
                raise RequestAbandoned("the client left before its generation started")
        return self.inner.generate(request)


@pytest.fixture(scope="module")
def pool():
    with sim_pool(max_repls=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def verifier(pool):
    with Verifier(pool) as v:
        yield v


def prover_with(verifier, generator, **settings) -> Prover:
    return Prover(generator, ProofChecker(verifier), sim_config(**settings))


def scripted(path: Path):
    return make_generator(GeneratorSettings(backend="scripted", script=str(path)))


# --------------------------------------------------------------------------- #
# Targets: where a proof goes and how it is laid out


def test_a_statement_target_gets_the_full_theorem_under_its_header():
    target = Target.for_statement("import Mathlib\nopen Nat\n", STATEMENT + " := by sorry")
    placed = target.with_tactics(["intro", "omega"])
    assert placed.code == f"import Mathlib\n\nopen Nat\n\n{STATEMENT} := by\n  intro\n  omega\n"
    assert placed.proof == f"{STATEMENT} := by\n  intro\n  omega"
    with pytest.raises(TargetError, match="statement"):
        Target.for_statement(HEADER, "def f : ℕ := 3")


@pytest.mark.parametrize(("answer", "body"), [
    # the whole theorem, with its own header: the target's header is the one checked
    (f"import Mathlib\nimport Aesop\n\n{STATEMENT} := by\n  omega", f"{STATEMENT} := by\n  omega"),
    # helper lemmas before the theorem are kept
    (f"lemma aux : 1 = 1 := rfl\n\n{STATEMENT} := by\n  omega", f"lemma aux : 1 = 1 := rfl\n\n{STATEMENT} := by\n  omega"),
    # tactics alone are put under the statement
    ("    nlinarith\n    omega", f"{STATEMENT} := by\n  nlinarith\n  omega"),
])
def test_a_whole_proof_answer_is_read_into_the_statement(answer, body):
    placed = Target.for_statement(HEADER, STATEMENT).with_code(answer)
    assert placed is not None and placed.code == f"{HEADER}\n\n{body}\n"


SOURCE = """import Mathlib

theorem unfinished : 1 = 2 := by sorry

theorem pair (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  · exact hp
  · sorry

theorem inline (p : Prop) (hp : p) : p ∧ p := by sorry

theorem term_mode : True := sorry
"""


def target_at(source: str, nth: int) -> Target:
    pos = open_goals(source)[nth]
    return Target.at(build_goal_context(source=source, position=(pos.line, pos.column)))


def test_a_goal_at_a_position_gets_a_script_laid_out_where_the_call_was():
    on_its_line, after_by, term = target_at(SOURCE, 1), target_at(SOURCE, 2), target_at(SOURCE, 3)
    assert on_its_line.with_tactics(["skip", "exact hq"]).proof == "skip\n    exact hq"
    assert after_by.with_tactics(["exact ⟨hp, hp⟩"]).proof == "exact ⟨hp, hp⟩"
    assert after_by.with_tactics(["constructor", "exact hp", "exact hp"]).proof == \
        "\n  constructor\n  exact hp\n  exact hp"
    assert term.with_tactics(["trivial"]).proof == "by\n  trivial"
    assert on_its_line.statement == "theorem pair (p q : Prop) (hp : p) (hq : q) : p ∧ q"


def test_a_model_answer_that_continues_the_declaration_keeps_only_what_follows_the_call():
    target = target_at(SOURCE, 1)
    rewritten = "theorem pair (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n  · exact hp\n  · exact hq"
    assert target.with_code(rewritten).proof == "exact hq"
    assert target.with_code("exact hq").proof == "exact hq"
    assert target.with_code("theorem pair (p q : Prop) : p := by\n  simp") is None  # rewrote what precedes


def test_open_goals_finds_sorries_outside_comments_and_strings():
    source = '/- sorry -/\ntheorem a : True := by\n  -- sorry\n  sorry\ndef s := "sorry"\ntheorem b : True := sorry\n'
    assert [(p.line, p.column) for p in open_goals(source)] == [(4, 2), (6, 20)]
    assert [(p.line, p.column) for p in open_goals(source, "b")] == [(6, 20)]
    with pytest.raises(TargetError, match="no declaration named 'c'"):
        open_goals(source, "c")


# --------------------------------------------------------------------------- #
# Checking: at strict, judged on the proof itself at a position


def test_an_unfinished_lemma_elsewhere_does_not_hide_a_proof_but_a_sorry_in_it_is_caught(verifier):
    checker = ProofChecker(verifier)
    target = target_at(SOURCE, 1)
    good, cheat = target.with_tactics(["exact hq"]), target.with_tactics(["sorry"])
    checked_good, checked_cheat = checker.check([good, cheat], timeout=30, first_valid=False)
    assert checked_good.result.verdict == "invalid"  # the file still has `unfinished`'s sorry
    assert checked_good.concerns == () and checked_good.proved
    assert not checked_cheat.proved and {r.code for r in checked_cheat.concerns} == {"uses_sorry"}


def test_a_proof_at_a_position_in_a_file_with_an_axiom_is_not_vouched_for(verifier):
    source = ("import Mathlib\n\nnamespace Demo\n\naxiom cheat (p : Prop) : p\n\n"
              "theorem t (p : Prop) : p ∧ True := by\n  sorry\n\nend Demo\n")
    target = target_at(source, 0)
    assert target.name == "Demo.t"
    (checked,) = ProofChecker(verifier).check([target.with_tactics(["exact ⟨cheat p, trivial⟩"])], 30)
    # the policy rejects the file's `axiom`, so the verifier does not audit; the proof is not vouched for
    assert [r.code for r in checked.result.reasons] == ["forbidden:axiom"] and checked.result.axioms is None
    assert [r.code for r in checked.concerns] == ["audit_incomplete"] and not checked.proved


def test_a_statement_proof_must_prove_the_statement_asked(verifier):
    checker = ProofChecker(verifier)
    target = Target.for_statement(HEADER, STATEMENT)
    weakened = target.with_code("theorem double (x : ℕ) : 0 ≤ x := by\n  omega")
    (checked,) = checker.check([weakened], timeout=30)
    assert not checked.proved and "statement_mismatch" in {r.code for r in checked.concerns}


# --------------------------------------------------------------------------- #
# Whole proofs with repair


def test_whole_proofs_are_repaired_with_leans_errors(tmp_path, verifier):
    script = write_jsonl(
        tmp_path / "proofs.jsonl",
        {"theorem": "double", "round": 0, "proofs": [f"{STATEMENT} := by\n  exact two_lt_mul h"]},
        {"theorem": "double", "round": 1, "proofs": [f"{STATEMENT} := by\n  omega"]})
    generator = Recording(scripted(script))
    result = prover_with(verifier, generator).prove(
        ProveRequest(strategy="whole", header=HEADER, statement=STATEMENT, samples=4, rounds=2))
    assert result.proved and result.strategy == "whole"
    assert result.proof == f"{STATEMENT} := by\n  omega"
    assert (result.samples, result.rounds) == (2, 1)
    first, second = generator.requests
    assert first.proof.feedback == ()
    (failed,) = second.proof.feedback
    assert "Unknown identifier `two_lt_mul`" in failed.errors and "exact two_lt_mul h" in failed.code
    assert failed.errors.startswith("4:8: error:")  # the line and column in the code shown with it
    prompt = get_proof_format("prover-completion").render(second.proof).text
    assert "Unknown identifier `two_lt_mul`" in prompt and "exact two_lt_mul h" in prompt
    assert result.check.result.verdict == "valid" and result.check.result.trust == "strict"
    assert result.timings.total_ms >= result.timings.checking_ms > 0


def test_whole_proofs_stop_at_the_first_proof_and_skip_the_rest(tmp_path, verifier):
    proofs = [f"{STATEMENT} := by\n  {t}" for t in ("omega", "linarith", "nlinarith", "positivity", "decide")]
    script = write_jsonl(tmp_path / "proofs.jsonl", {"theorem": "double", "proofs": proofs})
    result = prover_with(verifier, scripted(script)).prove(
        ProveRequest(strategy="whole", header=HEADER, statement=STATEMENT, samples=5, rounds=0))
    checked = [a for a in result.attempts if a.checked.result is not None]
    assert result.proved and result.proof.endswith("omega")
    assert len(checked) <= 2  # the proof, and at most a sibling already running on the other REPL
    assert result.checking.skipped == 5 - len(checked) >= 3


def test_a_hopeless_statement_is_not_proved_and_says_why(tmp_path, verifier):
    script = write_jsonl(tmp_path / "proofs.jsonl",
                          {"theorem": "bad", "proofs": ["theorem bad : 2 + 2 = 5 := by\n  decide"]})
    result = prover_with(verifier, scripted(script)).prove(
        ProveRequest(strategy="whole", header=HEADER, statement="theorem bad : 2 + 2 = 5", rounds=1))
    assert not result.proved and result.proof is None and result.stopped == "exhausted"
    assert result.check.result.verdict == "invalid" and result.samples == 2


def test_the_budget_stops_the_repairs(tmp_path, verifier):
    script = write_jsonl(tmp_path / "proofs.jsonl",
                          {"theorem": "bad", "proofs": ["theorem bad : 2 + 2 = 5 := by\n  -- sim: delay 1.5\n  decide"]})
    result = prover_with(verifier, scripted(script), min_timeout=0.5).prove(
        ProveRequest(strategy="whole", header=HEADER, statement="theorem bad : 2 + 2 = 5", rounds=16, timeout=1.0))
    assert not result.proved and result.stopped == "timeout"
    assert result.timings.total_ms < 5000 and result.rounds < 16


def test_no_check_starts_after_the_budget_and_none_runs_past_it(tmp_path, verifier):
    slow = [f"theorem bad : 2 + 2 = 5 := by\n  -- sim: delay 3\n  {t}" for t in ("decide", "omega", "simp", "rfl")]
    script = write_jsonl(tmp_path / "proofs.jsonl", {"theorem": "bad", "proofs": slow})
    result = prover_with(verifier, scripted(script), min_timeout=0.5).prove(
        ProveRequest(strategy="whole", header=HEADER, statement="theorem bad : 2 + 2 = 5", samples=4, rounds=0,
                     timeout=1.5))
    checked = [a.checked.result for a in result.attempts if a.checked.result is not None]
    assert len(checked) == 2 and result.checking.skipped == 2  # two REPLs: the two others would start too late
    assert all(r.verdict == "timeout" and "deadline" in r.reasons[0].message for r in checked)
    assert not result.proved and result.stopped == "timeout" and result.timings.total_ms < 3000


@pytest.mark.parametrize(("left", "generations", "checks"), [
    ("after the first generation", 1, 0),  # its proofs are not checked
    ("after the first round's checks", 1, 1),  # no repair is asked for
    ("while the repair's batched generation waited", 2, 1),
])
def test_whole_proofs_whose_caller_left_stop_before_the_next_step(tmp_path, verifier, left, generations, checks):
    script = write_jsonl(tmp_path / "proofs.jsonl",
                          {"theorem": "bad", "proofs": ["theorem bad : 2 + 2 = 5 := by\n  decide"]})
    generator = Recording(scripted(script), leaves_at=2 if "batched" in left else None)
    checked_before = verifier.stats().snippets
    abandoned = {"after the first generation": lambda: len(generator.requests) >= 1,
                 "after the first round's checks": lambda: verifier.stats().snippets > checked_before}.get(left)
    result = prover_with(verifier, generator).prove(
        ProveRequest(strategy="whole", header=HEADER, statement="theorem bad : 2 + 2 = 5", rounds=16,
                     abandoned=abandoned))
    assert not result.proved and result.stopped == "client_left"
    assert len(generator.requests) == generations
    assert result.checking.checked == checks == verifier.stats().snippets - checked_before


def test_without_a_model_whole_proofs_are_the_finishing_tactics(verifier):
    generator = make_generator(GeneratorSettings(backend="hint"))
    result = prover_with(verifier, generator).prove(
        ProveRequest(strategy="whole", header=HEADER, statement=STATEMENT, samples=3, rounds=0))
    assert result.proved and result.proof.startswith(STATEMENT + " := by\n  ")


def test_the_tiny_model_runs_the_whole_proof_path(tiny_causal, verifier):
    generator = make_generator(GeneratorSettings(model=str(tiny_causal), prompt_format="proofstep",
                                                 proof_format="prover-completion", temperatures=(1.0,)))
    result = prover_with(verifier, generator, proof_max_new_tokens=8).prove(
        ProveRequest(strategy="whole", header=HEADER, statement=STATEMENT, samples=3, rounds=1))
    assert result.samples >= 1 and result.timings.generation_ms > 0
    assert all(a.code.startswith(HEADER) for a in result.attempts)  # the pre-filled statement is in every one


# --------------------------------------------------------------------------- #
# pass@k


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(10_000, 3, 100) == pytest.approx(1 - math.comb(9_997, 100) / math.comb(10_000, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


PROBLEMS = [Problem("half", HEADER, "theorem half : 1 + 1 = 2"), Problem("none", HEADER, "theorem none : 1 = 2"),
            Problem("all", HEADER, "theorem all : 2 = 2")]


def test_evaluation_estimates_pass_at_k_and_first_valid_wins_saves_checks(tmp_path, pool):
    script = tmp_path / "eval.jsonl"
    lines = []
    for problem, tactics in (("half", ["exact nope_a", "exact nope_b", "rfl", "exact nope_c"]),
                             ("none", ["decide", "norm_num", "rfl", "omega"]),
                             ("all", ["rfl", "decide", "norm_num", "simp"])):
        stmt = next(p.statement for p in PROBLEMS if p.id == problem)
        lines.append({"theorem": problem, "proofs": [f"{stmt} := by\n  {t}" for t in tactics]})
    write_jsonl(script, *lines)
    with Verifier(pool, cache_size=0) as uncached:  # the second run must not be answered from the first's cache
        prover = prover_with(uncached, scripted(script))
        outcomes, summary = Evaluation(prover, "whole", k=4, check_all=True, parallel=2).run(PROBLEMS)
        first, fast = Evaluation(prover, "whole", k=4, parallel=2).run(PROBLEMS)
    assert [sum(1 for p in o.proved if p) for o in outcomes] == [1, 0, 4]
    assert summary.pass_at[1] == pytest.approx((0.25 + 0 + 1) / 3)
    assert summary.pass_at[2] == pytest.approx((0.5 + 0 + 1) / 3)
    assert summary.pass_at[4] == pytest.approx(2 / 3) and summary.solved == 2
    assert summary.attempts_checked == 12 and summary.attempts_skipped == 0
    assert fast.pass_at[4] == summary.pass_at[4]  # with k = n both say "some attempt proved it"
    assert fast.attempts_skipped >= 2 and fast.attempts_checked < summary.attempts_checked
    for outcome in first:
        j = outcome.first_proof
        assert j is None or all(p is False for p in outcome.proved[:j])  # everything before the first proof ran


# --------------------------------------------------------------------------- #
# POST /prove


def test_post_prove_answers_with_the_proof_and_where_the_time_went(tmp_path):
    script = write_jsonl(tmp_path / "proofs.jsonl",
                          {"theorem": "double", "proofs": [f"{STATEMENT} := by\n  omega"]})
    with running_server(suggest=True, backend="scripted", script=str(script)) as server:
        answer = requests.post(server.url + "/prove", json={
            "header": HEADER, "statement": STATEMENT + " := by sorry", "strategy": "whole", "timeout": 600},
            timeout=60).json()
        assert answer["proved"] is True and answer["strategy"] == "whole"
        assert answer["proof"] == f"{STATEMENT} := by\n  omega"
        assert answer["samples"] == 1 and answer["rounds"] == 0 and answer["expansions"] == 0
        assert set(answer["timings"]) == {"generation_ms", "checking_ms", "total_ms"}
        assert answer["check"]["verdict"] == "valid" and answer["check"]["trust"] == "strict"
        assert answer["limits"]["prove_timeout"] == {"seconds": 120.0, "requested": 600, "source": "server",
                                                     "max": 120.0, "min": 1.0}
        source = "import Mathlib\n\ntheorem double (x : ℕ) (h : 2 < x) : 4 < 2 * x := by\n  sorry\n"
        at = requests.post(server.url + "/prove", json={"source": source, "position": {"line": 4, "column": 2},
                                                         "strategy": "whole"}, timeout=60).json()
        assert at["proved"] and at["proof"] == "omega"


def test_a_client_cannot_prove_for_longer_than_the_server_allows(tmp_path):
    script = write_jsonl(tmp_path / "slow.jsonl", {"theorem": "bad", "proofs": [
        f"theorem bad : 2 + 2 = 5 := by\n  -- sim: delay 30\n  decide -- {k}" for k in range(8)]})
    with running_server(suggest=True, backend="scripted", script=str(script), prove_timeout=2.0) as server:
        answer = requests.post(server.url + "/prove", json={
            "header": HEADER, "statement": "theorem bad : 2 + 2 = 5", "strategy": "whole", "timeout": 600,
            "samples": 8, "rounds": 16}, timeout=60).json()
    assert answer["proved"] is False and answer["stopped"] == "timeout"
    assert answer["limits"]["prove_timeout"]["seconds"] == 2.0 and answer["limits"]["prove_timeout"]["source"] == \
        "server"
    assert answer["timings"]["total_ms"] < 8000  # cut at the server's 2 s (plus a check's kill), not at 600 s


def test_a_client_that_hangs_up_stops_its_proving_and_an_honest_one_still_gets_its_proof(caplog):
    body = json.dumps(SlowChain.PROVE).encode()
    model = SlowChain()
    caplog.set_level(logging.INFO, logger="leanstep.server.generation")

    def dropped() -> list[str]:
        return [r.getMessage() for r in caplog.records if "/prove dropped" in r.getMessage()]

    with running_server(generator=model, prove_timeout=120, check_timeout=30) as server:
        sessions = server.services.sessions
        port = int(server.url.rsplit(":", 1)[1])
        quitter = socket.create_connection(("127.0.0.1", port), timeout=10)
        quitter.sendall(b"POST /prove HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_until(lambda: model.chain_calls >= 2, what="the search never reached its second expansion")
        at_hang_up = model.chain_calls
        quitter.close()
        # the search had some 30 s of expansions and 120 s of budget left; it stops within the expansion it was in
        wait_until(lambda: sessions.stats().open == 0 and bool(dropped()), timeout=20,
                   what="the proving went on after its client hung up")
        stopped = model.chain_calls
        assert stopped <= at_hang_up + 1
        assert "the client left" in dropped()[0] and "proving failed" not in caplog.text  # answered 503 client left
        answer = requests.post(server.url + "/prove", json=SlowChain.EASY, timeout=60)
        assert answer.status_code == 200 and answer.json()["proved"] is True, answer.text
        assert answer.json()["proof"] == "theorem easy : True := by\n  trivial"
        assert model.chain_calls == stopped and sessions.stats().open == 0  # nothing of the first one ran on


@pytest.mark.parametrize(("body", "detail"), [
    ({"statement": "theorem t : True", "source": "x", "position": {"line": 1, "column": 0}}, "name one target"),
    ({}, "name one target"),
    ({"statement": "def f : ℕ := 1"}, "statement"),
    ({"source": "theorem t : True := by\n  simp\n", "position": {"line": 9, "column": 0}}, "outside the source"),
    ({"statement": "theorem t : True", "strategy": "magic"}, "strategy"),
    ({"statement": "theorem t : True", "samples": 0}, "samples"),
    ({"statement": "theorem t : True", "samples": 10**6}, "samples"),
    ({"statement": "theorem t : True", "expansions": 10**9}, "expansions"),
    ({"statement": "theorem t : True", "rounds": 10**3}, "rounds"),
    ({"statement": "theorem t : True", "timeout": 1e9}, "timeout"),
    ({"statement": "theorem t : True", "timeout": 0.01}, "minimum"),
    ({"statement": "theorem t : True\u0000"}, "NUL"),
])
def test_post_prove_refuses_bad_requests_with_422_naming_the_problem(body, detail):
    with running_server(suggest=True, backend="hint") as server:
        response = requests.post(server.url + "/prove", json=body, timeout=30)
        assert response.status_code == 422, response.text
        assert detail in response.json()["detail"]
        assert requests.post(server.url + "/prove", data="{", headers={"Content-Type": "application/json"},
                             timeout=30).status_code == 400


# --------------------------------------------------------------------------- #
# The commands


def leanstep(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leanstep", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "python")})


SIM = ("--repl", "sim", "--sandbox", "none", "--max-repls", "2", "--no-progress")


def test_leanstep_prove_fills_each_sorry_and_prints_a_diff(tmp_path):
    path = tmp_path / "Demo.lean"
    path.write_text(SOURCE, encoding="utf-8")
    result = leanstep("prove", str(path), *SIM, "--no-model", "--strategy", "whole")
    assert result.returncode == 1, result.stderr  # `unfinished` (1 = 2) cannot be proved
    assert "3 of 4 goals proved" in result.stderr
    assert "+  · rfl" in result.stdout and "+theorem term_mode : True := by" in result.stdout
    assert path.read_text(encoding="utf-8") == SOURCE  # a diff, not an edit
    written = leanstep("prove", str(path), *SIM, "--no-model", "--strategy", "whole", "--theorem", "pair", "--write")
    assert written.returncode == 0, written.stderr
    assert "  · rfl\n" in path.read_text(encoding="utf-8") and "theorem unfinished : 1 = 2 := by sorry" in \
        path.read_text(encoding="utf-8")


def test_leanstep_prove_says_when_there_is_nothing_to_prove(tmp_path):
    path = tmp_path / "Done.lean"
    path.write_text("import Mathlib\n\ntheorem t : True := trivial\n", encoding="utf-8")
    result = leanstep("prove", str(path), *SIM, "--no-model")
    assert result.returncode == 2 and "no `sorry`" in result.stderr


def test_leanstep_eval_writes_every_attempt_a_summary_and_a_plot(tmp_path):
    problems = write_jsonl(tmp_path / "problems.jsonl",
                           *({"id": p.id, "header": p.header, "formal_statement": p.statement} for p in PROBLEMS))
    result = leanstep("eval", str(problems), *SIM, "--no-model", "--pass-k", "2", "--samples", "3", "--check-all",
                      "-o", str(tmp_path / "attempts.jsonl"), "--plot", str(tmp_path / "pass.png"))
    assert result.returncode == 0, result.stderr
    attempts = [json.loads(line) for line in (tmp_path / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 9 and {a["problem"] for a in attempts} == {"half", "none", "all"}
    assert all("verdict" in a and "code" in a for a in attempts)
    assert "pass@2:" in result.stdout and "3 problems, 2 solved" in result.stdout
    assert (tmp_path / "pass.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = leanstep("eval", str(problems), *SIM, "--no-model", "--pass-k", "4", "--samples", "2")
    assert bad.returncode == 2 and "--pass-k" in bad.stderr


# --------------------------------------------------------------------------- #
# llmqed's path: the tactic's bridge posting llmstep's request to /prove


def run_bridge(url: str, request: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "python" / "leanstep_bridge.py"), "--route", "/prove",
                           "--url", url, "--timeout", "60"], input=json.dumps(request).encode(),
                          capture_output=True, timeout=90)


def test_llmqed_request_through_the_bridge_gets_a_proof_laid_out_at_the_call(tmp_path):
    request = json.loads((ROOT / "tests" / "fixtures" / "tactic_request.json").read_text(encoding="utf-8"))
    request |= {"timeout": 30, "strategy": "whole"}  # what llmqed adds to llmstep's request
    script = write_jsonl(tmp_path / "proofs.jsonl",
                          {"theorem": "and_swap'", "proofs": ["constructor\nexact h.2\nexact h.1"]})
    with running_server(suggest=True, backend="scripted", script=str(script)) as server:
        done = run_bridge(server.url, request)
        assert done.returncode == 0, done.stdout
        reply = json.loads(done.stdout)
        assert reply["proved"] and reply["strategy"] == "whole"
        # the call follows `by` on the declaration's line: the lines go under it, one level in
        assert reply["proof"] == "\n  constructor\n  exact h.2\n  exact h.1"
        assert "\n" not in done.stdout.decode().strip()  # one line, as the tactic reads it
    with running_server(suggest=False) as server:  # no /prove route: a warning for the tactic, exit 4
        done = run_bridge(server.url, request)
        assert done.returncode == 4 and json.loads(done.stdout)["kind"] == "http"
