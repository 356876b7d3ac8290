import Lean

/-!
# Where this package's sources were compiled from

`leanstep_source_file%` elaborates to the path of the file being compiled, as
Lake passed it to Lean (relative to the workspace root, or absolute). The bridge
script `python/leanstep_bridge.py` sits two levels above
`LeanTactic/Bridge.lean`, so this is how the tactic finds it when `leanstep` is
a dependency in `.lake/packages/leanstep`.
-/

open Lean Elab Term in
/-- The path of the file being elaborated, as a string literal. -/
elab "leanstep_source_file%" : term => do
  return mkStrLit (← readThe Core.Context).fileName
