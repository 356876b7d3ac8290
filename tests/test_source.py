"""Header/body split and declaration finding (pure text; no REPL)."""

from __future__ import annotations

import dataclasses

import pytest

from leanstep.check.source import (
    ContextError,
    blank_comments,
    declarations,
    goal_context_of_statement,
    goal_contexts_at_sorries,
    split_source,
)
from leanstep.repl.protocol import Pos


def test_no_imports_gives_an_empty_header_and_the_whole_text_as_body():
    code = "-- a comment first\ntheorem a : 1 = 1 := rfl\n"
    split = split_source(code)
    assert split.header == ""
    assert split.body == code
    assert split.line_offset == 0


def test_imports_with_comments_and_blank_lines_between_them():
    code = "import Mathlib\n-- why we need Aesop\n\n/- block /- nested -/ still -/\nimport Aesop  -- trailing\n\ntheorem x : True := trivial\n"
    split = split_source(code)
    assert split.header == "import Mathlib\nimport Aesop"
    assert split.header_line_map == (1, 5)
    assert split.line_offset == 5
    assert split.body == "\ntheorem x : True := trivial\n"
    # body line 2 is the theorem, user line 7
    assert split.body.split("\n")[1] == code.split("\n")[split.line_offset + 1]


@pytest.mark.parametrize("header", [
    "module\npublic import Mathlib.Tactic\nmeta import Lean.Elab\nimport all Foo.Bar",
    "prelude\nimport Init.Core",
    "public meta import Lean",
])
def test_new_header_keywords(header):
    split = split_source(header + "\ndef x := 1\n")
    assert split.header == header
    assert split.body == "def x := 1\n"


def test_imports_are_never_rewritten_and_order_is_kept():
    code = "import Mathlib.Data.Real.Basic\nimport Mathlib.Tactic\nimport Mathlib.Data.Real.Basic\nexample : True := trivial"
    assert split_source(code).header == "import Mathlib.Data.Real.Basic\nimport Mathlib.Tactic\nimport Mathlib.Data.Real.Basic"


def test_doc_comment_after_imports_stays_with_its_declaration():
    split = split_source("import Mathlib\n/-- The answer. -/\ntheorem t : True := trivial")
    assert split.header == "import Mathlib"
    assert split.body.startswith("/-- The answer. -/")
    assert split.line_offset == 1


def test_headers_differing_only_in_comments_and_whitespace_share_a_key():
    a = split_source("import Mathlib\nimport Aesop\ntheorem t : True := trivial")
    b = split_source("-- imports\nimport Mathlib   \n\nimport Aesop -- search\ntheorem t : True := trivial")
    assert a.header == b.header
    assert a.body == b.body
    assert (a.line_offset, b.line_offset) == (2, 4)


def test_words_that_only_start_like_keywords_are_body():
    for code in ("importX\n", "module_thing := 1\n", "imports are nice\n", "preludeFoo\n"):
        assert split_source(code).header == ""


def test_import_only_file_has_an_empty_body():
    split = split_source("import Mathlib")
    assert split.header == "import Mathlib" and split.body == ""


def test_block_comment_spanning_into_the_import_line_is_blanked_keeping_columns():
    split = split_source("/- licence\n   text -/ import A\ndef x := 1")
    assert split.header.strip() == "import A"
    assert split.header.index("import") == len("   text -/ ")
    assert split.header_line_map == (2,)
    assert split.user_header_line(1) == 2


def test_blank_comments_keeps_lines_and_columns():
    code = 'def s := "-- not a comment" -- real\n/- a\n b -/ theorem'
    blanked = blank_comments(code)
    assert len(blanked) == len(code) and blanked.count("\n") == code.count("\n")
    assert "real" not in blanked and "not a comment" not in blanked
    assert blanked.index("theorem") == code.index("theorem")


def test_declarations_with_namespaces_sections_and_modifiers():
    code = """namespace A
@[simp] private theorem foo : True := trivial
section
lemma bar.baz : 1 = 1 := rfl
end
end A
instance : Inhabited Nat := ⟨0⟩
instance (priority := 10) myInst : Foo := x
theorem _root_.q : True := trivial
/-- theorem fake : False -/
example : True := trivial
axiom ax : False
namespace B.C
noncomputable def d := 1
end C
def e := 2
end B
"""
    found = [(d.kind, d.name) for d in declarations(code)]
    assert found == [
        ("theorem", "A.foo"), ("lemma", "A.bar.baz"), ("instance", None), ("instance", "myInst"),
        ("theorem", "q"), ("example", None), ("axiom", "ax"), ("def", "B.C.d"), ("def", "B.e"),
    ]
    example = [d for d in declarations(code) if d.kind == "example"][0]
    assert (example.line, example.column) == (11, 0)


def test_declarations_ignore_text_in_comments_and_strings():
    code = '-- theorem hidden : False := sorry\ndef s := "theorem also_hidden"\n/- lemma nope -/'
    assert [(d.kind, d.name) for d in declarations(code)] == [("def", "s")]


# --------------------------------------------------------------------------- #
# Goal contexts of a proof session's origins


def test_every_sorry_runs_as_its_declaration_after_the_ones_above_it():
    code = ("import Mathlib\n\n/-- doc -/\n@[simp]\ntheorem a : 1 = 1 := by\n  sorry -- not this one: sorry\n\n"
            "def s := \"sorry\"\n\ntheorem b (p q : Prop) : p ∧ q := by\n  constructor\n  · sorry\n  · exact sorry\n"
            "\n#eval 1\n")
    first, second, third = goal_contexts_at_sorries(code)
    assert first.header == "import Mathlib" and first.preamble == ""
    assert first.declaration.startswith("/-- doc -/\n@[simp]\ntheorem a") and "def s" not in first.declaration
    assert first.sorry_pos == Pos(4, 2)
    assert second.preamble.startswith("/-- doc -/") and second.preamble.endswith('def s := "sorry"\n')
    assert second.declaration.startswith("theorem b") and "#eval" not in second.declaration
    assert (second.sorry_pos, third.sorry_pos) == (Pos(3, 4), Pos(4, 10))
    assert second.declaration == third.declaration and second.key != third.key


def test_a_sorry_context_under_a_heartbeat_cap_counts_the_set_option_line():
    (ctx,) = goal_contexts_at_sorries("import Mathlib\n\ntheorem t : True := by\n  sorry\n", heartbeats=1000)
    assert ctx.command.startswith("set_option maxHeartbeats 1000 in\n") and ctx.sorry_pos == Pos(3, 2)
    assert ctx.command.splitlines()[2][2:7] == "sorry"


def test_code_without_a_sorry_in_code_is_refused():
    with pytest.raises(ContextError, match="no `sorry`"):
        goal_contexts_at_sorries("import Mathlib\n\n-- sorry\ntheorem t : True := trivial /- sorry -/\n")


def test_a_statement_becomes_a_declaration_proved_by_sorry():
    ctx = goal_context_of_statement("theorem t (a : ℕ) :\n    a = a := by", "import Mathlib  -- x")
    assert ctx.header == "import Mathlib"
    assert ctx.declaration == "theorem t (a : ℕ) :\n    a = a := by\n  sorry\n" and ctx.sorry_pos == Pos(3, 2)


def test_a_goal_context_key_names_the_header_and_the_sorry():
    ctx = goal_context_of_statement("theorem t : True", "import Mathlib")
    assert ctx.key != goal_context_of_statement("theorem t : True", "import Aesop").key
    assert ctx.key != dataclasses.replace(ctx, sorry_pos=Pos(1, 0)).key
    assert ctx.key == goal_context_of_statement("theorem t : True", "import Mathlib").key
