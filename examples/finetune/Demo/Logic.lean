/-!
Small proofs in core Lean (no Mathlib) to try `leanstep extract` and `leanstep finetune` on;
docs/finetune.md walks through them.
-/

namespace Demo

theorem and_swap (p q : Prop) (h : p ∧ q) : q ∧ p := by
  constructor
  · exact h.2
  · exact h.1

theorem or_swap (p q : Prop) (h : p ∨ q) : q ∨ p := by
  cases h with
  | inl hp => exact Or.inr hp
  | inr hq => exact Or.inl hq

theorem imp_trans (p q r : Prop) (hpq : p → q) (hqr : q → r) : p → r := by
  intro hp
  exact hqr (hpq hp)

theorem and_left (p q : Prop) : p ∧ q → p := by
  intro h
  exact h.1

theorem modus_ponens (p q : Prop) (hp : p) (hpq : p → q) : q := by
  apply hpq
  exact hp

theorem iff_self_intro (p : Prop) : p ↔ p := by
  constructor
  · intro h
    exact h
  · intro h
    exact h

theorem and_assoc_mp (p q r : Prop) (h : (p ∧ q) ∧ r) : p ∧ (q ∧ r) := by
  have hp : p := h.1.1
  have hqr : q ∧ r := ⟨h.1.2, h.2⟩
  exact ⟨hp, hqr⟩

end Demo
