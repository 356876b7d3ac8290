import LeanTactic

/-!
# `llmstep` examples (core Lean only, no Mathlib)

Open this file in VS Code with the leanstep server running (`make serve`, or
`leanstep serve --workspace .`). Each `llmstep` call shows "Try these:" in the
Infoview: goal-closing suggestions first, each followed by its status
(`-- closes the goal`, `-- 1 goal remains`). Click one to replace the call.

`llmstep` and `llmqed` never change the proof state, so every proof below is completed by
the line after the call and the file elaborates with or without a server: with
the server down each call is just a warning ("llmstep: leanstep server not
reachable ...").

Build it from the command line with `lake build Examples`.
-/

/-- A bare call: no prefix. -/
example (p q : Prop) (hp : p) (hq : q) : p ∧ q := by
  llmstep
  exact ⟨hp, hq⟩

/-- A prefix constrains the suggestions: every one starts with `exact`. -/
example (p q : Prop) (h : p ∧ q) : q ∧ p := by
  llmstep "exact"
  exact ⟨h.2, h.1⟩

/-- Mid-proof: the goal sent is the one at the call, after `intro`. -/
theorem and_imp_swap (p q : Prop) : p ∧ q → q ∧ p := by
  intro h
  llmstep "constructor"
  exact ⟨h.2, h.1⟩

/-- Arithmetic on `Nat` with core tactics (`omega`, `simp`, `decide`). -/
theorem add_zero_twice (n : Nat) : n + 0 + 0 = n := by
  llmstep "simp"
  simp

/-- Options, per call: a longer timeout, more candidates, no local re-check. -/
example (xs : List Nat) : (xs ++ []).length = xs.length := by
  set_option llmstep.timeout 30000 in
  set_option llmstep.n 16 in
  set_option llmstep.localCheck false in
  llmstep "simp"
  simp

/-- `llmqed` asks for a whole proof of the goal at the call; the server checks it in Lean
before offering it ("Try this:", with the strategy and what it cost after it). -/
theorem swap_and_again (p q : Prop) (h : p ∧ q) : q ∧ p := by
  set_option llmqed.timeout 30000 in
  llmqed
  exact ⟨h.2, h.1⟩
