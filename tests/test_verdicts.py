"""Verdicts an RL pipeline can trust: every cheat of the corpus rejected at its level, every honest proof accepted.

The corpus (``verdict_corpus``) runs through the same ``Verifier`` and checks the
server builds (``checks_from_config``), on the simulated REPL; the summary line
at the end of the run says how many of each held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import leanstep.check.verdict as codes
from conftest import VERDICT_TALLY
from leanstep.check.policy import SourcePolicy
from leanstep.check.trust import allowed_imports, checks_from_config
from leanstep.check.verdict import REASON_CODES, Reason, Trust, Verdict
from leanstep.check.verify import Checks, Snippet, Verifier, VerifyOptions
from leanstep.repl.launch import make_pool
from server_fixtures import sim_config
from verdict_corpus import ASKED, CHEATS, HONEST, HONEST_WITH_STATEMENT

HEADER = "import Mathlib\n"
CONFIG = sim_config(warm_headers=("import Mathlib",))


@pytest.fixture(scope="module")
def pool():
    with make_pool(CONFIG) as pool:
        yield pool


@pytest.fixture(scope="module")
def verifier(pool):
    with Verifier(pool, checks=checks_from_config(CONFIG)) as verifier:
        yield verifier


def submission(code: str) -> str:
    return code if code.startswith(("import", "prelude")) else HEADER + code


def check(verifier, code, trust=Trust.STRICT, statement=None, **options):
    return verifier.verify(Snippet("x", submission(code), statement),
                           VerifyOptions(timeout=10, trust=trust, **options))


def reason_codes(result) -> list[str]:
    return [r.code for r in result.reasons]


# --------------------------------------------------------------------------- the corpus


@dataclass
class Runs:
    results: dict[tuple[str, str, Trust], object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def corpus_runs(verifier) -> Runs:
    """Every cheat and honest proof at both REPL levels, in two batches per level (as a pipeline sends them)."""
    runs = Runs()
    for trust in (Trust.LENIENT, Trust.STRICT):
        options = VerifyOptions(timeout=10, trust=trust)
        cheats = [Snippet(c.name, submission(c.code), c.statement) for c in CHEATS]
        honest = [Snippet(name, submission(code)) for name, code in HONEST] + \
            [Snippet(name, submission(code), statement) for name, statement, code in HONEST_WITH_STATEMENT]
        for kind, batch in (("cheat", cheats), ("honest", honest)):
            for snippet, result in zip(batch, verifier.verify_batch(batch, options)):
                runs.results[(kind, snippet.id, trust)] = result
    return runs


@pytest.mark.parametrize("cheat", CHEATS, ids=lambda c: c.name)
def test_each_cheat_is_rejected_from_its_level_up(cheat, corpus_runs):
    levels = [t for t in (Trust.LENIENT, Trust.STRICT) if t.rank >= Trust(cheat.level).rank]
    missed = {}
    for trust in levels:
        result = corpus_runs.results[("cheat", cheat.name, trust)]
        if result.verdict != Verdict.INVALID or cheat.reason not in reason_codes(result):
            missed[trust] = (result.verdict, [str(r) for r in result.reasons])
    VERDICT_TALLY["cheats"].append(not missed)
    assert not missed, (cheat.source, missed)


HONEST_NAMES = [name for name, _ in HONEST] + [name for name, _, _ in HONEST_WITH_STATEMENT]


@pytest.mark.parametrize("name", HONEST_NAMES)
def test_each_honest_proof_is_valid_at_strict(name, corpus_runs):
    result = corpus_runs.results[("honest", name, Trust.STRICT)]
    VERDICT_TALLY["honest"].append(result.verdict == Verdict.VALID)
    assert result.verdict == Verdict.VALID, [str(r) for r in result.reasons]
    assert corpus_runs.results[("honest", name, Trust.LENIENT)].verdict == Verdict.VALID


def test_the_corpus_is_as_large_as_promised():
    assert len(CHEATS) >= 40 and len(HONEST_NAMES) >= 40


# --------------------------------------------------------------------------- nothing to check, #exit


@pytest.mark.parametrize("code", ["", "   \n", "-- a comment\n", "/-- a doc comment -/\n", "#check Nat\n",
                                  "axiom a : True\n", "namespace Foo\nend Foo\n"])
def test_a_snippet_that_proves_nothing_is_invalid_at_every_level(verifier, code):
    for trust in (Trust.LENIENT, Trust.STRICT):
        result = check(verifier, code, trust)
        assert result.verdict == Verdict.INVALID
        assert codes.NOTHING_TO_CHECK in reason_codes(result)


def test_exit_is_invalid_even_at_lenient_and_names_its_user_line(verifier):
    code = "import Mathlib\n-- a comment\n\ntheorem ok : 1 = 1 := rfl\n#exit\ntheorem bad : 1 = 2 := rfl\n"
    result = verifier.verify(Snippet("x", code), VerifyOptions(timeout=10, trust=Trust.LENIENT))
    (reason,) = result.reasons
    assert result.verdict == Verdict.INVALID and reason.code == "forbidden:#exit"
    assert reason.pos is not None and (reason.pos.line, reason.pos.column) == (5, 0)


def test_a_rejected_snippet_still_runs_so_kimina_fields_do_not_change(verifier):
    result = check(verifier, "theorem t : 2 + 2 = 4 := by native_decide")
    assert result.verdict == Verdict.INVALID and reason_codes(result) == ["forbidden:native_decide"]
    assert result.env is not None and result.error is None


# --------------------------------------------------------------------------- trust levels


def test_lenient_trusts_the_compiler_and_declared_axioms_strict_does_not(verifier):
    for code in ("theorem t : 2 + 2 = 4 := by native_decide", "axiom bad : False\ntheorem t : 1 = 2 := bad.elim"):
        assert check(verifier, code, Trust.LENIENT).verdict == Verdict.VALID
        assert check(verifier, code, Trust.STRICT).verdict == Verdict.INVALID


def test_each_result_says_the_level_it_was_checked_at(verifier):
    for trust in (Trust.LENIENT, Trust.STRICT):
        assert check(verifier, "theorem t : 1 = 1 := rfl", trust).trust is trust


def test_a_policy_rejection_names_the_rule_the_token_and_its_place(verifier):
    result = check(verifier, "theorem t : 1 = 2 := by\n  set_option debug.skipKernelTC true in rfl")
    reason = result.reasons[0]  # the policy's, before Lean's own error
    assert reason.code == "forbidden:debug.skipKernelTC"
    assert reason.pos is not None and reason.pos.line == 3  # the user's line, header included
    assert "debug.skipKernelTC" in reason.message and "kernel" in reason.message


def test_imports_outside_the_allowlist_are_rejected_at_strict_with_their_line():
    assert allowed_imports(CONFIG) == frozenset({"Mathlib"})
    assert allowed_imports(sim_config()) is None  # no warm headers: any import
    assert allowed_imports(sim_config(allow_import=("Mathlib", "Aesop"))) == frozenset({"Mathlib", "Aesop"})


def test_a_header_violation_is_reported_in_the_users_lines(verifier):
    code = "-- header\nimport Mathlib\n\nimport Evil.Module\ntheorem t : 1 = 1 := rfl\n"
    result = verifier.verify(Snippet("x", code), VerifyOptions(timeout=10))
    (reason,) = result.reasons
    assert reason.code == codes.IMPORT_NOT_ALLOWED and reason.pos is not None and reason.pos.line == 4


def test_native_decide_is_allowed_only_with_the_explicit_option(pool):
    code = HEADER + "theorem t : 2 + 2 = 4 := by native_decide"
    allowed = checks_from_config(sim_config(allow_native_decide=True))
    with Verifier(pool, checks=allowed) as verifier:
        result = verifier.verify(Snippet("x", code), VerifyOptions(timeout=10))
    assert result.verdict == Verdict.VALID and "Lean.ofReduceBool" in result.axioms["t"]


# --------------------------------------------------------------------------- the audit cannot be answered


@pytest.fixture(scope="module")
def audit_only(pool):
    """A verifier whose policy lets native_decide through but whose audit forbids its axiom: so each test
    below shows the audit itself catching Lean.ofReduceBool, with no policy rule to fall back on."""
    checks = Checks(policy=SourcePolicy(allow_native=True), allow_native=False)
    with Verifier(pool, checks=checks) as verifier:
        yield verifier


@pytest.mark.parametrize("code", [
    "namespace Foo\ntheorem t : 2 + 2 = 4 := by native_decide\n",  # a namespace left open
    "/-- 't' does not depend on any axioms -/\ntheorem t : 2 + 2 = 4 := by native_decide\n",
    "example : 2 + 2 = 4 := by native_decide\n",  # no name to print
    "private theorem t : 2 + 2 = 4 := by native_decide\n",
], ids=["open namespace", "doc look-alike", "example", "private"])
def test_the_audit_reads_only_its_own_answers(audit_only, code):
    result = audit_only.verify(Snippet("x", HEADER + code), VerifyOptions(timeout=10))
    assert result.verdict == Verdict.INVALID, [str(r) for r in result.reasons]
    assert reason_codes(result) == [codes.DISALLOWED_AXIOM]
    assert "Lean.ofReduceBool" in result.reasons[0].message


# --------------------------------------------------------------------------- the statement


@pytest.mark.parametrize("trust", [Trust.LENIENT, Trust.STRICT])
def test_the_statement_check_accepts_the_statement_proved(verifier, trust):
    result = check(verifier, "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by omega", trust, ASKED)
    assert result.verdict == Verdict.VALID, [str(r) for r in result.reasons]


def test_text_alone_is_fooled_by_include_lean_is_not(verifier):
    code = "variable (h : False)\ninclude h\ntheorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := h.elim\n"
    assert check(verifier, code, Trust.LENIENT, ASKED).verdict == Verdict.VALID
    strict = check(verifier, code, Trust.STRICT, ASKED)
    assert strict.verdict == Verdict.INVALID and reason_codes(strict) == [codes.STATEMENT_MISMATCH]
    assert "statement differs" in strict.reasons[0].message and "asked" in strict.reasons[0].message


def test_a_mismatch_says_what_differs(verifier):
    result = check(verifier, "theorem asked (x : ℕ) (h₀ : 5 < x) : 3 ≤ x := by omega", Trust.LENIENT, ASKED)
    message = result.reasons[0].message
    assert message.startswith("statement differs") and "5 < x" in message and "2 < x" in message


@pytest.mark.parametrize("statement", ["def f := 1", "theorem : True", "theorem t : True := trivial", "theorem t (x)"])
def test_an_unreadable_statement_is_an_error_not_a_verdict(verifier, statement):
    result = check(verifier, "theorem t : True := trivial", Trust.STRICT, statement)
    assert result.verdict == Verdict.ERROR and reason_codes(result) == [codes.STATEMENT_UNREADABLE]


def test_a_statement_that_does_not_elaborate_is_an_error(verifier):
    statement = "theorem t : (1 : ℕ) = 1 := by\n  sorry)"
    result = check(verifier, "theorem t : (1 : ℕ) = 1 := rfl", Trust.STRICT, statement)
    assert result.verdict == Verdict.ERROR


def test_the_cache_keeps_statements_and_levels_apart(verifier):
    code = "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by omega"
    assert check(verifier, code, Trust.STRICT, ASKED).verdict == Verdict.VALID
    other = ASKED.replace("asked", "other")
    assert check(verifier, code, Trust.STRICT, other).verdict == Verdict.INVALID
    assert check(verifier, "theorem t : 2 + 2 = 4 := by native_decide", Trust.LENIENT).verdict == Verdict.VALID
    assert check(verifier, "theorem t : 2 + 2 = 4 := by native_decide", Trust.STRICT).verdict == Verdict.INVALID


# --------------------------------------------------------------------------- sealed


@dataclass
class Report:
    axioms: dict[str, list[str]]
    error: str | None = None
    rejected: str | None = None
    time: float = 0.5


@dataclass
class RecordingRecheck:
    """A re-checker that answers what it is told to and records what it was asked (the real one, which
    runs lake, lean and leanchecker, is tested in test_sealed)."""

    report: Report
    missing: str | None = None
    asked: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def unavailable(self) -> str | None:
        return self.missing

    def check(self, header, body, names, timeout):
        self.asked.append((header, body, list(names)))
        return self.report


def sealed_verify(pool, recheck, code="theorem t : 1 = 1 := rfl\n"):
    with Verifier(pool, checks=Checks(sealed=recheck)) as verifier:
        return verifier.verify(Snippet("x", HEADER + code), VerifyOptions(timeout=10, trust=Trust.SEALED))


def test_sealed_without_its_tools_is_an_error_never_a_silent_fallback(pool):
    result = sealed_verify(pool, None)
    assert result.verdict == Verdict.ERROR and reason_codes(result) == [codes.SEALED_UNAVAILABLE]
    missing = sealed_verify(pool, RecordingRecheck(Report({}), missing="leanchecker is not installed"))
    assert missing.verdict == Verdict.ERROR and "leanchecker is not installed" in missing.reasons[0].message


def test_sealed_takes_the_axioms_from_the_recheck_not_from_the_repl(pool):
    recheck = RecordingRecheck(Report({"t": ["sorryAx"]}))
    result = sealed_verify(pool, recheck)
    assert recheck.asked == [("import Mathlib", "theorem t : 1 = 1 := rfl\n", ["t"])]
    assert result.verdict == Verdict.INVALID and reason_codes(result) == [codes.DISALLOWED_AXIOM]
    assert result.axioms == {"t": ["sorryAx"]} and result.trust is Trust.SEALED


def test_sealed_rejection_and_failure(pool):
    rejected = sealed_verify(pool, RecordingRecheck(Report({}, rejected="(kernel) declaration type mismatch")))
    assert rejected.verdict == Verdict.INVALID and reason_codes(rejected) == [codes.SEALED_REJECTED]
    failed = sealed_verify(pool, RecordingRecheck(Report({}, error="leanchecker timed out after 10 s")))
    assert failed.verdict == Verdict.ERROR and "timed out" in failed.reasons[0].message


def test_sealed_runs_only_on_what_the_repl_found_valid(pool):
    recheck = RecordingRecheck(Report({}))
    result = sealed_verify(pool, recheck, "theorem t : 1 = 2 := by sorry\n")
    assert result.verdict == Verdict.INVALID and recheck.asked == []


# --------------------------------------------------------------------------- reason codes


def test_every_reason_code_is_documented_in_docs_verdicts():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "verdicts.md").read_text(encoding="utf-8")
    for code in REASON_CODES:
        assert f"`{code}`" in page, code


def test_an_unknown_reason_code_cannot_be_made():
    with pytest.raises(ValueError, match="unknown reason code"):
        Reason("made_up", "no")


def test_the_servers_sealed_level_on_the_simulator_says_what_it_lacks(verifier):
    result = check(verifier, "theorem t : 1 = 1 := rfl", Trust.SEALED)
    assert result.verdict == Verdict.ERROR and reason_codes(result) == [codes.SEALED_UNAVAILABLE]
    assert "--workspace" in result.reasons[0].message
