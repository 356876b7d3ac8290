/-! Arithmetic on `Nat` and lists with core tactics (`rfl`, `omega`, `simp`, `decide`, `induction`, `exact`). -/

namespace Demo

theorem add_zero_right (n : Nat) : n + 0 = n := by
  rfl

theorem zero_add_left (n : Nat) : 0 + n = n := by
  induction n with
  | zero => rfl
  | succ k ih => omega

theorem add_comm_nat (a b : Nat) : a + b = b + a := by
  omega

theorem two_mul_nat (n : Nat) : 2 * n = n + n := by
  omega

theorem le_add_one (n : Nat) : n ≤ n + 1 := by
  omega

theorem two_add_two : 2 + 2 = 4 := by
  decide

theorem lt_of_lt_of_le_nat (a b c : Nat) (h1 : a < b) (h2 : b ≤ c) : a < c := by
  omega

theorem add_one_ne_zero_nat (n : Nat) : n + 1 ≠ 0 := by
  exact Nat.succ_ne_zero n

theorem length_append_nat (xs ys : List Nat) : (xs ++ ys).length = xs.length + ys.length := by
  simp

theorem append_nil_nat (xs : List Nat) : xs ++ [] = xs := by
  simp

end Demo
