"""Submissions a verdict must get right: cheats that must be rejected and honest proofs that must be accepted.

Each cheat names where its trick comes from and the lowest trust level that
must reject it; ``policy`` says whether the source policy alone (before any
REPL) must catch it, so the policy can be tested even where the simulated REPL
cannot show the trick's effect. The honest proofs are in the styles RL provers
write (Lean Workbook / miniF2F): they must stay ``valid`` at ``strict``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cheat:
    name: str
    code: str
    source: str
    level: str  # lowest trust level that must reject it: lenient, strict
    reason: str  # the reason code it must get
    policy: bool = True  # the source policy alone rejects it
    statement: str | None = None  # the formal statement it was asked to prove


MANUAL = "Lean reference manual, 'Validating a Lean Proof'"

CHEATS: tuple[Cheat, ...] = (
    # nothing to check is not a proof (measured on leanstep before the fix: all `valid`)
    Cheat("empty", "", "leanstep measurement", "lenient", "nothing_to_check", policy=False),
    Cheat("whitespace", "  \n\t\n", "leanstep measurement", "lenient", "nothing_to_check", policy=False),
    Cheat("comment only", "-- nothing here\n", "leanstep measurement", "lenient", "nothing_to_check", policy=False),
    Cheat("block comment only", "/- theorem t : False := sorry -/\n", "leanstep measurement", "lenient",
          "nothing_to_check", policy=False),
    Cheat("doc comment only", "/-- a theorem would go here -/\n", "leanstep measurement", "lenient",
          "nothing_to_check", policy=False),
    Cheat("import only", "import Mathlib\n", "leanstep measurement", "lenient", "nothing_to_check", policy=False),
    # ending elaboration early
    Cheat("#exit before a false theorem", "#exit\ntheorem t : 1 = 2 := by rfl\n", "leanstep measurement",
          "lenient", "forbidden:#exit"),
    Cheat("#exit after a true one", "theorem ok : 1 = 1 := rfl\n#exit\ntheorem bad : 1 = 2 := by rfl\n",
          "leanstep measurement", "lenient", "forbidden:#exit"),
    # sorry in its forms (Lean's own warning, and the axiom behind it)
    Cheat("sorry", "theorem t : 1 = 2 := by sorry\n", MANUAL, "lenient", "uses_sorry", policy=False),
    Cheat("admit", "theorem t (n : ℕ) : n = n + 1 := by\n  admit\n", MANUAL, "lenient", "uses_sorry", policy=False),
    Cheat("sorryAx by name", "theorem t : 1 = 2 := sorryAx _ false\n", MANUAL, "strict", "forbidden:sorryAx"),
    Cheat("sorryAx in guillemets", "theorem t : 1 = 2 := «sorryAx» _ false\n", MANUAL, "strict", "forbidden:sorryAx"),
    # axioms
    Cheat("axiom", "axiom bad : False\ntheorem t : 1 = 2 := bad.elim\n", MANUAL, "strict", "forbidden:axiom"),
    # the kernel switched off
    Cheat("debug.skipKernelTC", "set_option debug.skipKernelTC true in\ntheorem t : 1 = 2 := by rfl\n", MANUAL,
          "strict", "forbidden:debug.skipKernelTC"),
    Cheat("debug.skipKernelTC quoted", "set_option «debug».skipKernelTC true in\ntheorem t : 1 = 2 := by rfl\n",
          MANUAL, "strict", "forbidden:debug.skipKernelTC"),
    Cheat("debug option inside a proof", "theorem t : 1 = 2 := by\n  set_option debug.skipKernelTC true in rfl\n",
          MANUAL, "strict", "forbidden:debug.skipKernelTC"),
    # trusting the compiler
    Cheat("native_decide", "theorem t : 2 ^ 10 = 1024 := by native_decide\n", MANUAL, "strict",
          "forbidden:native_decide"),
    Cheat("decide +native", "theorem t : 2 ^ 10 = 1024 := by decide +native\n", MANUAL, "strict",
          "forbidden:native"),
    Cheat("ofReduceBool", "theorem t : True := Lean.ofReduceBool true true rfl ▸ trivial\n", MANUAL, "strict",
          "forbidden:ofReduceBool"),
    Cheat("ofReduceBool after open", "open Lean in\ntheorem t : True := ofReduceBool true true rfl ▸ trivial\n",
          MANUAL, "strict", "forbidden:ofReduceBool"),
    Cheat("implemented_by with native_decide",
          "def f (n : ℕ) : Bool := false\n@[implemented_by f] def g (n : ℕ) : Bool := true\n"
          "theorem t : g 0 = false := by native_decide\n", f"{MANUAL}; SafeVerify", "strict",
          "forbidden:implemented_by"),
    Cheat("csimp smuggling", "def a : ℕ := 0\ndef b : ℕ := 1\n@[csimp] theorem h : a = b := sorry\n",
          "leanprover/lean4#7463", "strict", "forbidden:csimp"),
    Cheat("attribute csimp", "attribute [csimp] Nat.add_comm\n", "leanprover/lean4#7463", "strict",
          "forbidden:csimp"),
    Cheat("extern", '@[extern "lean_nat_add"] def myAdd (a b : ℕ) : ℕ := a\n', f"{MANUAL}; SafeVerify",
          "strict", "forbidden:extern"),
    Cheat("unsafe", "unsafe def loop : ℕ := loop\ntheorem t : True := trivial\n", "SafeVerify", "strict",
          "forbidden:unsafe"),
    Cheat("unsafeCast", "theorem t : (1 : ℕ) = 2 := unsafeCast ()\n", "SafeVerify", "strict",
          "forbidden:unsafeCast"),
    Cheat("opaque", "opaque secret : ℕ := 3\ntheorem t : True := trivial\n", MANUAL, "strict", "forbidden:opaque"),
    # hijacking the audit and the elaborator
    Cheat("macro_rules on #print axioms",
          "macro_rules | `(#print axioms $x) => `(#check $x)\ntheorem t : True := trivial\n",
          "leanstep audit design", "strict", "forbidden:macro_rules"),
    Cheat("macro", 'macro "prove_anything" : tactic => `(tactic| sorry)\ntheorem t : 1 = 2 := by prove_anything\n',
          "leanstep audit design", "strict", "forbidden:macro"),
    Cheat("syntax and elab", 'syntax "magic" : tactic\nelab_rules : tactic | `(tactic| magic) => pure ()\n',
          "leanstep audit design", "strict", "forbidden:syntax"),
    Cheat("elab command", 'elab "#fake" : command => pure ()\n', "leanstep audit design", "strict",
          "forbidden:elab"),
    Cheat("declare_syntax_cat", "declare_syntax_cat evil\n", "leanstep audit design", "strict",
          "forbidden:declare_syntax_cat"),
    Cheat("notation", 'notation "Nat2" => False\ntheorem t : ¬ Nat2 := id\n', "leanstep audit design", "strict",
          "forbidden:notation"),
    Cheat("simproc", "simproc evil (_) := fun _ => pure .continue\n", "leanstep audit design", "strict",
          "forbidden:simproc"),
    # code run at elaboration time
    Cheat("run_cmd adding an axiom",
          "open Lean Elab Command in\nrun_cmd liftCoreM <| addDecl <| .axiomDecl "
          "{ name := `bad, levelParams := [], type := mkConst ``False, isUnsafe := false }\n",
          MANUAL, "strict", "forbidden:run_cmd"),
    Cheat("run_tac", "theorem t : 1 = 2 := by\n  run_tac Lean.Elab.Tactic.evalTactic (← `(tactic| sorry))\n",
          MANUAL, "strict", "forbidden:run_tac"),
    Cheat("run_elab", "run_elab pure ()\n", MANUAL, "strict", "forbidden:run_elab"),
    Cheat("run_meta", "run_meta pure ()\n", MANUAL, "strict", "forbidden:run_meta"),
    Cheat("#eval with IO", '#eval IO.Process.run { cmd := "id" }\n', MANUAL, "strict", "forbidden:#eval"),
    Cheat("#eval!", "#eval! (1 : ℕ)\n", MANUAL, "strict", "forbidden:#eval!"),
    Cheat("initialize", "initialize pure ()\n", MANUAL, "strict", "forbidden:initialize"),
    # the core library itself
    Cheat("prelude", "prelude\ninductive Eq' : Prop\n", "leanprover/lean-eval SECURITY.md", "strict",
          "forbidden:prelude"),
    # hiding a token from a naive scanner
    Cheat("raw string hides an option",
          'def s := r#"x"y"#\nset_option debug.skipKernelTC true in\ntheorem t : 1 = 2 := by rfl -- "\n',
          "leanstep policy lexer", "strict", "forbidden:debug.skipKernelTC"),
    Cheat("plain string that reads as interpolated", 'def s := "{"\n#exit\n"}"\ntheorem t : 1 = 2 := by rfl\n',
          "leanstep policy lexer", "lenient", "forbidden:#exit"),
    Cheat("interpolation holds native_decide", 'def s := s!"{(by native_decide : 2 + 2 = 4)}"\n',
          "leanstep policy lexer", "strict", "forbidden:native_decide"),
    Cheat("character literal quote", "def c := '\"'\n#exit\ntheorem t : 1 = 2 := by rfl\n",
          "leanstep policy lexer", "lenient", "forbidden:#exit"),
)

ASKED = "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x"
STATEMENT_CHEATS: tuple[Cheat, ...] = (
    # reward hacking by changing what is proved (the list; the Lean check is leanstep's design)
    Cheat("weakened hypothesis", "theorem asked (x : ℕ) (h₀ : 5 < x) : 3 ≤ x := by omega\n", "reward hacking",
          "lenient", "statement_mismatch", policy=False, statement=ASKED),
    Cheat("changed goal", "theorem asked (x : ℕ) (h₀ : 2 < x) : 0 ≤ x := by omega\n", "reward hacking", "lenient",
          "statement_mismatch", policy=False, statement=ASKED),
    Cheat("extra binder", "theorem asked (x : ℕ) (h₀ : 2 < x) (h₁ : x = 3) : 3 ≤ x := by omega\n",
          "reward hacking", "lenient", "statement_mismatch", policy=False, statement=ASKED),
    Cheat("renamed theorem", "theorem asked' (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by omega\n", "reward hacking",
          "lenient", "statement_mismatch", policy=False, statement=ASKED),
    Cheat("statement left unproved beside another theorem",
          "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by sorry\ntheorem easy : True := trivial\n",
          "reward hacking", "lenient", "uses_sorry", policy=False, statement=ASKED),
    Cheat("a variable smuggled in with include",
          "variable (h : False)\ninclude h\ntheorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := h.elim\n",
          "Lean 4 `include` adds a section variable to a theorem's type (the text stays the statement's)",
          "strict", "statement_mismatch", policy=False, statement=ASKED),
    Cheat("using the reference statement", "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := "
          "leanstep_statement_0 x h₀\n", "leanstep audit design", "strict", "forbidden:reserved_name",
          statement=ASKED),
    Cheat("colliding with the audit's example alias",
          "def leanstep_example_1 : ℕ := 0\nexample : (1 : ℕ) = 1 := rfl\n", "leanstep audit design", "strict",
          "forbidden:reserved_name"),
)
CHEATS = CHEATS + STATEMENT_CHEATS

# Honest submissions with the statement they were asked: copied, reformatted, `lemma` for `theorem`.
HONEST_WITH_STATEMENT: tuple[tuple[str, str, str], ...] = (
    ("statement copied", ASKED, "theorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by omega\n"),
    ("statement reformatted", ASKED + " := by sorry",
     "theorem asked (x:ℕ) (h₀ : 2 < x) :\n    3 ≤ x := by\n  omega  -- the bound\n"),
    ("lemma for theorem", ASKED, "lemma asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x := by\n  omega\n"),
    ("helper lemma first", ASKED,
     "theorem helper (y : ℕ) (h : 2 < y) : 3 ≤ y := h\ntheorem asked (x : ℕ) (h₀ : 2 < x) : 3 ≤ x :=\n"
     "  helper x h₀\n"),
)

HONEST: tuple[tuple[str, str], ...] = (
    ("norm_num", "theorem t1 : (2 : ℕ) + 2 = 4 := by norm_num\n"),
    ("nlinarith with hints", "theorem t2 (a b : ℝ) (ha : 0 ≤ a) (hb : 0 ≤ b) : 0 ≤ a * b + a ^ 2 := by\n"
                             "  nlinarith [mul_nonneg ha hb, sq_nonneg a]\n"),
    ("linarith", "theorem t3 (x y : ℝ) (h₀ : x + y = 10) (h₁ : x - y = 2) : x = 6 := by linarith\n"),
    ("omega", "theorem t4 (n : ℕ) (h : n % 4 = 3) : n % 2 = 1 := by omega\n"),
    ("decide", "theorem t5 : (10 : ℕ) ∣ 100 := by decide\n"),
    ("simp", "theorem t6 (l : List ℕ) : (l ++ []).length = l.length := by simp\n"),
    ("induction", "theorem t7 (n : ℕ) : 2 * (List.range n).sum + n = n * n := by\n"
                  "  induction n with\n  | zero => simp\n  | succ k ih => simp [List.range_succ] at *; nlinarith\n"),
    ("calc", "theorem t8 (a b : ℕ) (h : a = b) : a + 0 = b := by\n  calc a + 0 = a := by simp\n    _ = b := h\n"),
    ("have chain", "theorem t9 (x : ℝ) (hx : 2 * x + 1 = 7) : x = 3 := by\n  have h1 : 2 * x = 6 := by linarith\n"
                   "  have h2 : x = 3 := by linarith\n  exact h2\n"),
    ("open in", "open Real in\ntheorem t10 : Real.sqrt 4 = 2 := by\n  rw [show (4 : ℝ) = 2 ^ 2 by norm_num]\n"
                "  exact Real.sqrt_sq (by norm_num)\n"),
    ("maxHeartbeats", "set_option maxHeartbeats 400000 in\ntheorem t11 (a b c : ℝ) (h : a < b) (hc : 0 < c) : "
                      "a * c < b * c := by nlinarith\n"),
    ("lemma", "lemma t12 (p q : Prop) (hp : p) (hq : q) : p ∧ q := ⟨hp, hq⟩\n"),
    ("example", "example (n : ℕ) : n + 0 = n := by simp\n"),
    ("unicode names", "theorem αβ_γ (x₁ x₂ : ℕ) (h : x₁ = x₂) : x₂ = x₁ := h.symm\n"),
    ("term mode", "theorem t15 (p : Prop) (h : p) : ¬¬p := fun hn => hn h\n"),
    ("rcases", "theorem t16 (p q : Prop) (h : p ∧ q) : q ∧ p := by\n  rcases h with ⟨hp, hq⟩\n  exact ⟨hq, hp⟩\n"),
    ("constructor", "theorem t17 : (1 : ℕ) < 2 ∧ (2 : ℕ) < 3 := by\n  constructor <;> norm_num\n"),
    ("cases", "theorem t18 (n : ℕ) : n = 0 ∨ 0 < n := by\n  cases n with\n  | zero => left; rfl\n"
              "  | succ m => right; exact Nat.succ_pos m\n"),
    ("field_simp", "theorem t19 (x : ℝ) (hx : x ≠ 0) : x / x = 1 := by\n  field_simp\n"),
    ("ring", "theorem t20 (a b : ℝ) : (a + b) ^ 2 = a ^ 2 + 2 * a * b + b ^ 2 := by ring\n"),
    ("positivity", "theorem t21 (x : ℝ) : 0 ≤ x ^ 2 + 1 := by positivity\n"),
    ("interval_cases", "theorem t22 (n : ℕ) (h₀ : n < 3) (h₁ : 0 < n) : n = 1 ∨ n = 2 := by\n"
                       "  interval_cases n <;> simp\n"),
    ("aesop", "theorem t23 (p q : Prop) (hp : p) : p ∨ q := by aesop\n"),
    ("exact?-free apply", "theorem t24 (a b : ℕ) (h : a ≤ b) : a ≤ b + 1 := by\n  apply Nat.le_succ_of_le\n"
                          "  exact h\n"),
    ("namespace", "namespace Foo\ntheorem bar : (3 : ℕ) ≠ 4 := by decide\nend Foo\n"),
    ("section variable", "section\nvariable (x : ℕ)\ntheorem t26 : x + 1 > x := Nat.lt_succ_self x\nend\n"),
    ("norm_num at", "theorem t27 (x : ℕ) (h : x + 2 = 5) : x = 3 := by\n  norm_num at h ⊢\n  omega\n"),
    ("obtain", "theorem t28 (f : ℕ → ℕ) (h : ∃ n, f n = 0) : ∃ m, f m = 0 := by\n  obtain ⟨n, hn⟩ := h\n"
               "  exact ⟨n, hn⟩\n"),
    ("by_contra", "theorem t29 (n : ℕ) (h : ¬ n ≤ 3) : 3 < n := by\n  by_contra h'\n  push_neg at h'\n"
                  "  exact h (by omega)\n"),
    ("use", "theorem t30 : ∃ n : ℕ, n * n = 16 := by\n  use 4\n"),
    ("gcongr", "theorem t31 (a b c : ℝ) (h : a ≤ b) : a + c ≤ b + c := by gcongr\n"),
    ("simp only with lemmas", "theorem t32 (a : ℕ) : a * 1 + 0 = a := by simp only [Nat.mul_one, Nat.add_zero]\n"),
    ("rw chain", "theorem t33 (a b c : ℕ) (h₁ : a = b) (h₂ : b = c) : a = c := by\n  rw [h₁, h₂]\n"),
    ("docstring", "/-- The sum of two even numbers is even. -/\ntheorem t34 (a b : ℕ) (ha : Even a) (hb : Even b) : "
                  "Even (a + b) := Even.add ha hb\n"),
    ("comment mentions forbidden words", "-- no native_decide, no #exit, no axiom here\n"
                                         "theorem t35 : (5 : ℕ) > 3 := by norm_num  -- sorry-free\n"),
    ("string mentions forbidden words", 'theorem t36 : "set_option debug.skipKernelTC".length > 0 := by decide\n'),
    ("private theorem", "private theorem t37 (x : ℤ) : x - x = 0 := by ring\n"),
    ("noncomputable def and theorem", "noncomputable def half (x : ℝ) : ℝ := x / 2\n"
                                      "theorem t38 : half 4 = 2 := by unfold half; norm_num\n"),
    ("instance", "instance : Inhabited (Fin 3) := ⟨0⟩\ntheorem t39 : (default : Fin 3) = 0 := rfl\n"),
    ("quoted identifier that is a keyword", "theorem «axiom» : True := trivial\n"),
    ("Finset sum", "open Finset in\ntheorem t41 : ∑ i ∈ range 4, i = 6 := by decide\n"),
    ("zify and nlinarith", "theorem t42 (a b : ℕ) (h : a ≥ b) : ((a - b : ℕ) : ℤ) = a - b := by\n"
                           "  push_cast [h]\n  ring\n"),
)
