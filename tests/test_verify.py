"""Whole-proof verification on the simulated REPL: verdicts, axiom audit, coordinates, cache, faults."""

from __future__ import annotations

import pytest

from leanstep.check.policy import SourcePolicy
from leanstep.check.verdict import Trust
from leanstep.check.verify import (
    ERROR, INVALID, TIMEOUT, VALID, Checks, ResultCache, Snippet, Verifier, VerifyOptions, parse_axioms, plan_audit,
    verify_batch,
)
from server_fixtures import sim_pool

CLEAN = "import Mathlib\n\ntheorem clean : 2 + 2 = 4 := by norm_num"


@pytest.fixture(scope="module")
def pool():
    with sim_pool() as pool:
        yield pool


@pytest.fixture
def verifier(pool):
    with Verifier(pool) as verifier:
        yield verifier


@pytest.fixture
def auditing(pool):
    """Strict checking whose policy lets native_decide through, so the axiom audit is what must catch it."""
    with Verifier(pool, checks=Checks(policy=SourcePolicy(allow_native=True))) as verifier:
        yield verifier


def check(verifier, code, **options):
    return verifier.verify(Snippet("x", code), VerifyOptions(**{"timeout": 10, "trust": Trust.LENIENT, **options}))


def codes(result):
    return [r.code for r in result.reasons]


# --------------------------------------------------------------------------- verdicts


def test_clean_proof_is_valid(verifier):
    result = check(verifier, CLEAN)
    assert result.verdict == VALID and result.ok
    assert not result.reasons and result.error is None


def test_sorry_is_invalid_with_the_sorry_reported(verifier):
    result = check(verifier, "theorem s : 1 + 1 = 2 := by sorry")
    assert result.verdict == INVALID
    assert codes(result) == ["uses_sorry"]
    assert len(result.sorries) == 1


def test_lean_error_is_invalid_with_the_message(verifier):
    result = check(verifier, "theorem e : 1 + 1 = 3 := by norm_num")
    assert result.verdict == INVALID
    assert any(m.is_error for m in result.messages)
    assert codes(result) == ["lean_error"] and "norm_num failed" in result.reasons[0].message


def test_native_decide_passes_lenient_but_not_the_strict_audit(verifier, auditing):
    code = "theorem nd : 10 + 10 = 20 := by native_decide"
    assert check(verifier, code).verdict == VALID
    assert codes(check(verifier, code, trust=Trust.STRICT)) == ["forbidden:native_decide"]  # the policy, first
    strict = check(auditing, code, trust=Trust.STRICT)
    assert strict.verdict == INVALID
    assert strict.axioms == {"nd": ["Lean.ofReduceBool"]}
    assert codes(strict) == ["disallowed_axiom"] and "Lean.ofReduceBool" in strict.reasons[0].message


def test_strict_rejects_a_declared_axiom_and_what_uses_it(verifier):
    code = "axiom cheat : False\ntheorem big : 1 = 2 := by exact cheat.elim"
    assert check(verifier, code).verdict == VALID  # no error, no sorry: lenient cannot tell
    result = check(verifier, code, trust=Trust.STRICT)
    assert result.verdict == INVALID
    assert codes(result) == ["forbidden:axiom"] and result.reasons[0].pos.line == 1


def test_strict_accepts_the_standard_axioms_and_audits_namespaced_names_and_examples(verifier):
    code = "namespace A\ntheorem d : 2 + 2 = 4 := by decide\nend A\nexample : True := trivial"
    result = check(verifier, code, trust=Trust.STRICT)
    assert result.verdict == VALID, result.reasons
    assert result.axioms == {"A.d": ["propext", "Classical.choice", "Quot.sound"], "example@4": []}


def test_strict_catches_native_decide_inside_an_example(auditing):
    result = check(auditing, "example : 3 = 3 := by native_decide", trust=Trust.STRICT)
    assert result.verdict == INVALID
    assert result.axioms == {"example@1": ["Lean.ofReduceBool"]}


def test_audit_plan_and_axiom_parsing():
    plan = plan_audit("theorem a : True := trivial\nexample : True := trivial\n")
    assert plan.on_header_env  # examples need the renamed copy
    assert "noncomputable def leanstep_example_1" in plan.command
    assert sorted(plan.lines.values()) == ["a", "example@2"]
    assert plan_audit("#eval 1") is None
    assert parse_axioms("'x' depends on axioms: [propext, sorryAx]") == ("x", ["propext", "sorryAx"])
    assert parse_axioms("'x' does not depend on any axioms") == ("x", [])
    assert parse_axioms("unknown constant") is None


def test_header_error_makes_the_snippet_invalid(verifier):
    result = check(verifier, "-- note\nimport Nonexistent.Thing\ntheorem t : True := trivial")
    assert result.verdict == INVALID
    assert codes(result) == ["header_error"]
    header_error = [m for m in result.messages if m.is_error][0]
    assert header_error.pos.line == 2  # the user's line of the import, not the header's line 1


# --------------------------------------------------------------------------- coordinates and isolation


def test_positions_are_in_the_users_lines(verifier):
    code = "import Mathlib\n-- comment\n\nimport Aesop\n\ntheorem t : 1 + 1 = 3 := by norm_num\ntheorem u : True := by sorry"
    result = check(verifier, code)
    error = [m for m in result.messages if m.is_error][0]
    assert error.pos.line == 6 and error.end_pos.line == 6
    assert code.split("\n")[5][error.pos.column:].startswith("norm_num")
    assert result.sorries[0].pos.line == 7
    assert code.split("\n")[6][result.sorries[0].pos.column:].startswith("sorry")


def test_infotree_ranges_are_shifted_too(verifier):
    result = check(verifier, "import Mathlib\n\ntheorem t : True := by\n  trivial", infotree="original")
    node = result.infotree[0]["node"]["stx"]["range"]
    assert node["start"]["line"] == 4


def test_headerless_snippets_are_isolated(verifier):
    results = verifier.verify_batch(["theorem same : True := trivial"] * 1 + ["theorem same : True := trivial\n"],
                                    VerifyOptions(timeout=10, use_cache=False))
    assert [r.verdict for r in results] == [VALID, VALID]


@pytest.mark.parametrize("code", ["#eval 1 + 1", "-- leading comment\ntheorem c : 1 = 1 := rfl",
                                  "--no space\ntheorem c : 1 = 1 := rfl", "# not a command"])
def test_code_starting_with_hash_or_dashes_gets_an_honest_result(verifier, code):
    result = check(verifier, code)
    assert result.verdict in (VALID, INVALID)
    assert result.error is None
    if code.startswith("# "):
        assert result.verdict == INVALID


@pytest.mark.parametrize("code,why", [("theorem a\x00 : True := trivial", "NUL"),
                                      ("theorem b\ud800 : True := trivial", "Unicode")])
def test_unsendable_text_is_a_per_snippet_error(verifier, pool, code, why):
    pids = sorted(pool.pids())
    result = check(verifier, code)
    assert result.verdict == ERROR and why in result.error
    assert sorted(pool.pids()) == pids


# --------------------------------------------------------------------------- batches, cache, faults


def test_batch_keeps_input_order_and_streams_every_result(verifier):
    codes = [f"theorem t{i} : {i} + 1 = {i + 1} := by norm_num" if i % 3 else f"theorem t{i} : 1 = 2 := by simp"
             for i in range(12)]
    seen = {}
    results = verifier.verify_batch([(f"id{i}", c) for i, c in enumerate(codes)], VerifyOptions(timeout=10),
                                    on_result=lambda i, r: seen.setdefault(i, r))
    assert [r.id for r in results] == [f"id{i}" for i in range(12)]
    assert [r.verdict for r in results] == [INVALID if i % 3 == 0 else VALID for i in range(12)]
    assert sorted(seen) == list(range(12)) and all(seen[i] is results[i] for i in range(12))


def test_duplicates_run_once_within_a_batch_and_hit_the_cache_across_batches(pool):
    cache = ResultCache(100)
    before = pool.stats().counters.requests
    code = "theorem dup : 5 + 5 = 10 := by norm_num"
    with Verifier(pool, cache=cache) as verifier:
        first = verifier.verify_batch([code, code, code, "theorem other : True := trivial"], VerifyOptions(timeout=10))
        assert pool.stats().counters.requests - before == 2
        assert cache.batch_duplicates == 2
        assert [r.cached for r in first] == [False, True, True, False]
        second = verifier.verify_batch([("again", code)], VerifyOptions(timeout=10))
    assert second[0].cached and second[0].verdict == VALID and second[0].id == "again"
    assert cache.hits == 1
    assert pool.stats().counters.requests - before == 2


def test_cache_keys_on_options_and_reports_user_coordinates_per_snippet(pool):
    with Verifier(pool, cache=ResultCache(100)) as verifier:
        a = verifier.verify(("a", "import Mathlib\ntheorem t : 1 = 2 := by simp"), VerifyOptions(timeout=10))
        b = verifier.verify(("b", "-- same header\n\nimport Mathlib  \ntheorem t : 1 = 2 := by simp"),
                            VerifyOptions(timeout=10))
        strict = verifier.verify(("c", "import Mathlib\ntheorem t : 1 = 2 := by simp"),
                                 VerifyOptions(timeout=10, trust=Trust.LENIENT))
    assert b.cached and not strict.cached
    assert a.messages[0].pos.line == 2 and b.messages[0].pos.line == 4


def test_timeout_and_crash_are_reported_per_snippet_and_not_cached(pool):
    cache = ResultCache(100)
    codes = [
        ("ok1", "theorem ok1 : 1 + 1 = 2 := by norm_num"),
        ("hang", "theorem h : True := by\n  sim_hang"),
        ("ok2", "theorem ok2 : 2 + 1 = 3 := by norm_num"),
        ("crash", "theorem c : True := by\n  sim_crash"),
        ("ok3", CLEAN),
    ]
    with Verifier(pool, cache=cache) as verifier:
        results = verifier.verify_batch(codes, VerifyOptions(timeout=1.0))
        by_id = {r.id: r for r in results}
        assert by_id["hang"].verdict == TIMEOUT
        assert "timed out in 1 seconds" in by_id["hang"].error
        assert by_id["crash"].verdict == ERROR and "lost" in by_id["crash"].error
        assert [by_id[k].verdict for k in ("ok1", "ok2", "ok3")] == [VALID] * 3
        again = verifier.verify(("hang", "theorem h : True := by\n  sim_hang"), VerifyOptions(timeout=0.5))
        assert again.verdict == TIMEOUT and not again.cached
    assert pool.wait_warm(10)
    counters = pool.stats().counters
    assert counters.timeouts >= 2 and counters.lost >= 1
    assert check_pool_serves(pool)


def check_pool_serves(pool) -> bool:
    return verify_batch(pool, [CLEAN], timeout=10)[0].verdict == VALID


def test_overload_is_a_per_snippet_error():
    with sim_pool(max_repls=1, queue_wait=0.2) as pool:
        results = verify_batch(pool, ["-- sim: delay 1.5\ntheorem slow : True := trivial", "theorem fast : True := trivial"],
                               timeout=10, max_workers=2)
    assert results[0].verdict == VALID
    assert results[1].verdict == ERROR and results[1].error.startswith("overloaded")


def test_options_are_validated():
    with pytest.raises(ValueError, match="timeout"):
        VerifyOptions(timeout=0)
    with pytest.raises(ValueError, match="infotree"):
        VerifyOptions(infotree="everything")
