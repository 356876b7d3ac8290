import Lake
open Lake DSL

/-!
`leanstep`: the `llmstep` tactic (library `LeanTactic`) and, through the `REPL`
dependency, the Lean REPL binary that the leanstep server runs.

`lake build` builds both default targets: the `LeanTactic` library and the
REPL executable, which lands in `.lake/packages/REPL/.lake/build/bin/repl`.
The REPL is pinned to the commit whose toolchain matches `lean-toolchain`.
-/

package leanstep

require REPL from git "https://github.com/leanprover-community/repl" @ "8948401ab4924499421c94b7facdfca5ff27d81d"

@[default_target]
lean_lib LeanTactic

/-- The core-Lean examples (`lake build Examples`); not a default target, since
elaborating them calls the leanstep server. -/
lean_lib Examples where
  srcDir := "examples"
  roots := #[`Examples]

/-- The REPL executable of the `REPL` dependency, built by a plain `lake build`. -/
@[default_target]
target replBinary : System.FilePath := do
  let some exe ← findLeanExe? `repl
    | error "the `repl` executable of the REPL dependency was not found in the workspace"
  exe.exe.fetch
