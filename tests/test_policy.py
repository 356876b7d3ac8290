"""The strict level's source policy: token rules that no comment, string or quoting can hide a construct from."""

from __future__ import annotations

import pytest

from leanstep.check.policy import SourcePolicy, imported_modules, module_allowed, tokens
from verdict_corpus import CHEATS, HONEST

POLICY = SourcePolicy(allowed_imports=frozenset({"Mathlib", "Aesop"}))


def texts(code: str) -> list[str]:
    return [t.text for t in tokens(code)]


# --------------------------------------------------------------------------- the lexer


def test_comments_and_strings_hold_no_tokens():
    code = '-- #exit\n/- axiom /- nested -/ still comment -/\ndef s := "native_decide -- not a comment"\n/-- doc -/'
    assert texts(code) == ["def", "s"]


def test_positions_are_one_based_lines_and_code_point_columns():
    toks = tokens("theorem αβ : (True) :=\n  trivial")
    assert [(t.text, t.line, t.column) for t in toks] == [
        ("theorem", 1, 0), ("αβ", 1, 8), ("(", 1, 13), ("True", 1, 14), (")", 1, 18), ("trivial", 2, 2)]


def test_guillemets_are_removed_and_remembered():
    (tok,) = tokens("«sorry»«Ax»".replace("»«", "».«"))
    assert tok.text == "sorry.Ax" and tok.quoted


def test_raw_strings_end_where_lean_ends_them():
    assert texts('r#"a"b"# x') == ["x"]
    assert texts('r"plain" y') == ["y"]


def test_character_literals_are_not_string_delimiters():
    assert texts("'\"' a '\\n' b") == ["a", "b"]
    assert texts("h' = h''") == ["h'", "h''"]


def test_the_braces_of_a_string_are_lexed_as_code():
    assert "native_decide" in texts('s!"value {by native_decide}"')


def test_a_string_whose_end_depends_on_interpolation_is_ambiguous():
    toks = tokens('"{" x "}"')
    assert toks[0].kind == "ambiguous" and "x" in [t.text for t in toks]


def test_hash_commands_and_quoted_names():
    assert texts("#exit #eval! `sorryAx ``Lean.ofReduceBool") == ["#exit", "#eval!", "sorryAx", "Lean.ofReduceBool"]


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("cheat", [c for c in CHEATS if c.policy], ids=lambda c: c.name)
def test_each_cheat_breaks_the_rule_it_is_listed_under(cheat):
    codes = [v.code for v in POLICY.violations(cheat.code)]
    assert cheat.reason in codes, (cheat.source, codes)


@pytest.mark.parametrize("name,code", HONEST, ids=[name for name, _ in HONEST])
def test_honest_proofs_break_no_rule(name, code):
    assert POLICY.violations(code) == []


def test_every_rule_message_names_the_rule_the_token_and_its_place():
    (violation,) = POLICY.violations("theorem t : True := trivial\n\n  #exit\n")
    assert violation.message().startswith("forbidden:#exit: `#exit` at line 3, column 2")


def test_keywords_in_guillemets_are_identifiers_but_quoted_constants_are_not_hidden():
    assert POLICY.violations("theorem «axiom» : True := trivial") == []
    assert [v.code for v in POLICY.violations("theorem t : False := «sorryAx» _ false")] == ["forbidden:sorryAx"]


def test_native_decide_is_allowed_only_when_asked_for():
    code = "theorem t : 2 ^ 10 = 1024 := by native_decide"
    assert SourcePolicy(allow_native=True).violations(code) == []
    assert [v.code for v in SourcePolicy().violations(code)] == ["forbidden:native_decide"]


def test_imports_must_be_in_the_allowlist_or_below_an_allowed_module():
    code = "import Mathlib.Tactic\nimport Aesop\npublic import Evil.Module\ntheorem t : True := trivial"
    assert [(v.code, v.token) for v in POLICY.violations(code)] == [("import_not_allowed", "Evil.Module")]
    assert SourcePolicy(allowed_imports=None).violations(code) == []
    assert module_allowed("Mathlib.Data.Nat", frozenset({"Mathlib"}))
    assert not module_allowed("MathlibEvil", frozenset({"Mathlib"}))


def test_the_default_allowlist_is_what_the_warm_headers_import():
    assert imported_modules("import Mathlib\nimport Aesop -- and a comment\n") == {"Mathlib", "Aesop"}
