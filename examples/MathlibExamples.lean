import Mathlib
import LeanTactic

/-!
# `llmstep` examples that need Mathlib

Not built with leanstep itself (leanstep does not depend on Mathlib). Copy this
file into a project that requires both Mathlib and leanstep (see docs/vscode.md),
run `leanstep setup --workspace <project>` and `leanstep serve --workspace <project>`,
then open it. As in `Examples.lean`, each proof is completed after the call, so
the file elaborates with or without a server.
-/

example (a b : ℕ) : a + b = b + a := by
  llmstep ""
  exact Nat.add_comm a b

example (x : ℝ) (hx : 0 ≤ x) : 0 ≤ x ^ 2 + x := by
  llmstep "positivity"
  positivity

theorem sq_nonneg' (a : ℤ) : 0 ≤ a * a := by
  llmstep "nlinarith"
  nlinarith [sq_nonneg a]

example (s t : Set ℕ) : s ∩ t ⊆ s := by
  llmstep "intro"
  intro x hx
  exact hx.1
