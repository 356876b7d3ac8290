import Lean

/-!
# Checking a suggestion in Lean itself

Used for suggestions the server returns `unchecked` (no REPL could reach the
goal). The recipe is core's own validation recipe for "Try this" suggestions:
restore the state the call started from, run the candidate with error recovery
off (`withoutRecover`, `Term.withoutErrToSorry`) so a failure is a failure and
not a `sorry`, then restore the state we had. On top of that:

* a heartbeat cap per candidate (`llmstep.heartbeats`), and runtime exceptions
  (heartbeats, recursion depth) count as "invalid" instead of escaping;
* the verdict comes from the candidate's OWN messages: the message log is
  emptied before it runs, so errors logged earlier in the same proof do not
  make every candidate look invalid;
* only the main goal is in scope, so "closes the goal" means that goal;
* info trees are restored too, so rejected candidates leave no hovers behind.
-/

open Lean Elab Tactic

namespace LeanTactic

/-- Texts that "close" any goal without proving it. -/
def isCheat (text : String) : Bool :=
  (text.splitOn "sorry").length > 1 || (text.splitOn "admit").length > 1

/-- Runs `text` as a tactic on the main goal of `initial`. `none`: it does not parse,
fails, logs an error, or runs out of heartbeats. `some n`: it succeeds, leaving `n` goals.
The tactic state (goals, metavariables, messages, info trees) is the same afterwards. -/
def checkCandidate (initial : Tactic.SavedState) (text : String) (maxHeartbeats : Nat) :
    TacticM (Option Nat) := do
  if isCheat text then return none
  let .ok stx := Parser.runParserCategory (← getEnv) `tactic text | return none
  let saved ← Tactic.saveState
  initial.restore (restoreInfo := true)
  -- judge the candidate by the messages it logs itself
  modifyThe Core.State fun s => { s with messages := {} }
  let result ← tryCatchRuntimeEx
    (do
      let main ← getMainGoal
      setGoals [main]
      withTheReader Core.Context (fun ctx => { ctx with maxHeartbeats := maxHeartbeats * 1000 }) <|
        Core.withCurrHeartbeats <|
          Term.withoutErrToSorry <| withoutRecover <| evalTactic stx
      if (← getThe Core.State).messages.hasErrors then
        return none
      return some (← getUnsolvedGoals).length)
    (fun _ => pure none)
  saved.restore (restoreInfo := true)
  return result

end LeanTactic
