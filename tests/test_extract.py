"""``leanstep extract``: Lean files on a (simulated) REPL pool to one JSON record per tactic step,
per-file errors that never stop the run, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from leanstep.cli import main as leanstep
from leanstep.data.extract import file_log_path, main, problems_of, problems_path
from leanstep.generate.prompts import render

LOCAL = ["--repl", "sim", "--sandbox", "none", "--max-repls", "2", "--no-progress"]

PAIRS = """theorem and_swap (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  constructor
  · exact hp
  · have h : q := by exact hq
    exact h

theorem add_zero' (n : Nat) : n + 0 = n := by
  induction n with
  | zero => rfl
  | succ k ih => simp
"""

MIXED = """theorem fine : 2 + 2 = 4 := by norm_num

theorem broken (x : Nat) : x = x := by
  exact no_such_lemma

theorem holey (p : Prop) (hp : p) : p ∧ True := by
  constructor
  · sorry
  · trivial
"""


NAMESPACED = """import Std.Data.List -- what the problems run under

/-! Theorems in namespaces, and declarations that are no problem. -/

namespace Demo

def three : Nat := by exact 3

theorem add_zero' (n : Nat) : n + 0 = n := by
  rfl

namespace Inner

@[simp] private theorem swap {p q : Prop}
    (h : p ∧ q) : q ∧ p :=
  ⟨h.2, h.1⟩

theorem _root_.top_level (n : Nat) : n = n := by rfl

end Inner

example : True := by trivial

""" + MIXED + """
end Demo
"""


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def log_entries(output: Path) -> dict[str, dict]:
    return {e["file"]: e for e in records(file_log_path(output))}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "Sub").mkdir(parents=True)
    (root / "Pairs.lean").write_text(PAIRS, encoding="utf-8")
    (root / "Sub" / "Mixed.lean").write_text(MIXED, encoding="utf-8")
    (root / ".lake" / "packages").mkdir(parents=True)
    (root / ".lake" / "packages" / "Dep.lean").write_text("theorem dep : True := by trivial\n", encoding="utf-8")
    return root


def test_every_step_of_a_project_becomes_a_record_with_its_goals_declaration_and_training_prompt(project, tmp_path,
                                                                                                capsys):
    out = tmp_path / "steps.jsonl"
    assert leanstep(["extract", str(project), "-o", str(out), *LOCAL]) == 0
    steps = [r for r in records(out) if r["file"] == "Pairs.lean"]
    assert [(r["decl"], r["tactic"]) for r in steps] == [
        ("and_swap", "constructor"), ("and_swap", "exact hp"), ("and_swap", "have h : q := by exact hq"),
        ("and_swap", "exact hq"), ("and_swap", "exact h"),
        ("add_zero'", "induction n with\n  | zero => rfl\n  | succ k ih => simp"), ("add_zero'", "rfl"),
        ("add_zero'", "simp")]
    constructor = steps[0]
    assert constructor["position"] == {"line": 2, "column": 2}
    assert constructor["end_position"] == {"line": 2, "column": 13}
    assert constructor["goals_before"] == ["p q : Prop\nhp : p\nhq : q\n⊢ p ∧ q"]
    assert constructor["goals_after"] == ["case left\np q : Prop\nhp : p\nhq : q\n⊢ p",
                                          "case right\np q : Prop\nhp : p\nhq : q\n⊢ q"]
    assert constructor["state_after"] == "\n\n".join(constructor["goals_after"])
    assert steps[1]["state_after"] == "no goals"
    for record in steps:  # the training text is the prompt served for the goal the tactic sends
        assert record["prompt"] == render("proofstep", record["goals_before"][0]).text
        assert record["prompt"] == f"[GOAL]{record['goals_before'][0]}[PROOFSTEP]"
        assert record["completion"] == record["tactic"]
    assert not any(r["file"].startswith(".lake") for r in records(out))
    assert "2 files: " in capsys.readouterr().err


def test_a_declaration_with_an_error_and_a_sorry_step_are_left_out_and_the_rest_kept(project, tmp_path):
    out = tmp_path / "steps.jsonl"
    assert main([str(project / "Sub" / "Mixed.lean"), "-o", str(out), *LOCAL]) == 0
    assert [(r["decl"], r["tactic"]) for r in records(out)] == [
        ("fine", "norm_num"), ("holey", "constructor"), ("holey", "trivial")]
    entry = log_entries(out)["Mixed.lean"]
    assert entry["steps"] == 3 and entry["error"] is None
    assert entry["skipped"] == {"declaration with an error": 1, "sorry": 1}


def test_every_proved_named_theorem_becomes_a_problem_under_the_files_header_with_its_full_name(tmp_path):
    (tmp_path / "Namespaced.lean").write_text(NAMESPACED, encoding="utf-8")
    out = tmp_path / "steps.jsonl"
    assert main([str(tmp_path / "Namespaced.lean"), "-o", str(out), *LOCAL]) == 0
    header = "import Std.Data.List"
    assert records(problems_path(out)) == [
        {"id": "Demo.add_zero'", "file": "Namespaced.lean", "header": header,
         "statement": "theorem Demo.add_zero' (n : Nat) : n + 0 = n"},
        {"id": "Demo.Inner.swap", "file": "Namespaced.lean", "header": header,
         "statement": "theorem Demo.Inner.swap {p q : Prop}\n    (h : p ∧ q) : q ∧ p"},
        {"id": "top_level", "file": "Namespaced.lean", "header": header,
         "statement": "theorem top_level (n : Nat) : n = n"},
        {"id": "Demo.fine", "file": "Namespaced.lean", "header": header, "statement": "theorem Demo.fine : 2 + 2 = 4"}]
    # a problem's id is the `decl` of the theorem's steps
    assert {r["decl"] for r in records(out)} >= {"Demo.add_zero'", "top_level"}
    assert [p["id"] for p in problems_of(out, {("Namespaced.lean", "top_level"), ("Other.lean", "Demo.add_zero'"),
                                               ("Namespaced.lean", "Demo.broken")})] == ["top_level"]
    assert problems_of(tmp_path / "elsewhere.jsonl", {("Namespaced.lean", "top_level")}) is None


def test_errors_are_reported_per_file_and_never_stop_the_run(project, tmp_path, capsys):
    (project / "Hangs.lean").write_text("theorem slow : True := by\n  sim_hang\n", encoding="utf-8")
    (project / "Latin1.lean").write_bytes("theorem caf\xe9 : True := by trivial\n".encode("latin-1"))
    (project / "NoImport.lean").write_text("import Nonexistent.Module\ntheorem t : True := by trivial\n",
                                           encoding="utf-8")
    out = tmp_path / "steps.jsonl"
    assert main([str(project), "-o", str(out), "--timeout", "2", *LOCAL]) == 0
    entries = log_entries(out)
    assert "timed out in 2 seconds" in entries["Hangs.lean"]["error"]
    assert "not UTF-8" in entries["Latin1.lean"]["error"]
    assert "outside any declaration" in entries["NoImport.lean"]["error"]
    assert entries["Pairs.lean"]["error"] is None and entries["Pairs.lean"]["steps"] == 8
    assert {r["file"] for r in records(out)} == {"Pairs.lean", "Sub/Mixed.lean"}
    err = capsys.readouterr().err
    assert "Hangs.lean: Lean REPL command timed out" in err and "files with errors: 3" in err


def test_a_run_resumes_where_it_stopped_and_redoes_what_changed(project, tmp_path, capsys):
    out = tmp_path / "steps.jsonl"
    assert main([str(project), "-o", str(out), *LOCAL]) == 0
    first = records(out)
    # a run cut off while writing: steps of a file with no log line yet, and half a line
    with out.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({**first[0], "file": "Gone.lean"}) + "\n" + '{"file": "Pairs.le')
    (project / "Sub" / "Mixed.lean").write_text(MIXED + "\ntheorem more : True := by trivial\n", encoding="utf-8")
    capsys.readouterr()
    assert main([str(project), "-o", str(out), *LOCAL]) == 0
    assert "resuming: 1 of 2 files already extracted" in capsys.readouterr().err
    again = records(out)
    assert [r for r in again if r["file"] == "Pairs.lean"] == [r for r in first if r["file"] == "Pairs.lean"]
    assert [r["tactic"] for r in again if r["file"] == "Sub/Mixed.lean"] == [
        "norm_num", "constructor", "trivial", "trivial"]
    assert {r["file"] for r in again} == {"Pairs.lean", "Sub/Mixed.lean"}
    assert sorted(log_entries(out)) == ["Pairs.lean", "Sub/Mixed.lean"]
    assert len(records(file_log_path(out))) == 2
    assert [(p["file"], p["id"]) for p in records(problems_path(out))] == [
        ("Pairs.lean", "and_swap"), ("Pairs.lean", "add_zero'"), ("Sub/Mixed.lean", "fine"), ("Sub/Mixed.lean", "more")]


def test_a_finished_extraction_starts_no_repl_and_overwrite_starts_afresh(project, tmp_path, capsys):
    out = tmp_path / "steps.jsonl"
    assert main([str(project), "-o", str(out), *LOCAL]) == 0
    before = sorted(out.read_text(encoding="utf-8").splitlines())  # files in the order they finished
    broken_repl = ["--repl", str(tmp_path / "no-such-repl"), "--sandbox", "none", "--no-progress"]
    assert main([str(project), "-o", str(out), *broken_repl]) == 0  # nothing left to do: no REPL is needed
    assert sorted(out.read_text(encoding="utf-8").splitlines()) == before
    assert main([str(project), "-o", str(out), "--overwrite", *broken_repl]) == 2
    assert "leanstep extract:" in capsys.readouterr().err
    assert main([str(project), "-o", str(out), "--overwrite", *LOCAL]) == 0
    assert sorted(out.read_text(encoding="utf-8").splitlines()) == before


def test_jsonl_snippets_are_filed_by_id_and_ids_must_be_unique(tmp_path, capsys):
    data = write_jsonl(tmp_path / "proofs.jsonl", {"id": "p1", "code": "theorem a : True := by trivial"},
                       {"custom_id": "p2", "proof": "theorem b : 1 + 1 = 2 := by norm_num"})
    out = tmp_path / "steps.jsonl"
    assert main([str(data), "-o", str(out), *LOCAL]) == 0
    assert sorted((r["file"], r["decl"], r["tactic"]) for r in records(out)) == [("p1", "a", "trivial"),
                                                                                  ("p2", "b", "norm_num")]
    write_jsonl(data, {"id": "p1", "code": "theorem a : True := by trivial"},
                {"id": "p1", "code": "theorem b : True := by trivial"})
    assert main([str(data), "-o", str(tmp_path / "other.jsonl"), *LOCAL]) == 2
    assert "'p1' names more than one snippet" in capsys.readouterr().err
