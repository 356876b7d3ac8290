import Lean

/-!
# Checking a suggestion in Lean itself

Used for suggestions the server returns `unchecked` (no REPL could reach the
goal). The recipe is core's own validation recipe for "Try this" suggestions:
restore the state the call started from, run the candidate with error recovery
off (`withoutRecover`, `Term.withoutErrToSorry`) so a failure is a failure and
not a `sorry`, then restore the state we had. On top of that:

* a heartbeat cap per candidate, never above what the user's declaration has
  left (`heartbeatsLeft`, `candidateCap`); runtime exceptions (heartbeats,
  recursion depth) count against the candidate instead of escaping;
* the heartbeats a candidate used are given back (`IO.setNumHeartbeats`): the
  declaration's own limit compares the thread's counter with the count at its
  start (`Core.checkMaxHeartbeatsCore`), so without this every re-checked
  suggestion would eat into the user's proof, and how much would depend on
  what the model happened to suggest;
* the verdict comes from the candidate's OWN messages: the message log is
  emptied before it runs, so errors logged earlier in the same proof do not
  make every candidate look invalid;
* `sorry` and `admit` written as tokens, a direct `sorryAx`, or a `sorry` in the
  proof term the candidate built make it a failure; a lemma whose name only
  contains the word (`sorry_free`) does not;
* only the main goal is in scope, so "closes the goal" means that goal;
* info trees are restored too, so rejected candidates leave no hovers behind.
-/

open Lean Elab Tactic

namespace LeanTactic

/-- What re-checking one suggestion found. -/
inductive CheckResult where
  /-- It ran without error and without `sorry`, leaving this many goals (0: it closes the goal). -/
  | goalsLeft (n : Nat)
  /-- It does not parse, fails, logs an error, or uses `sorry`. -/
  | failed
  /-- It ran past its heartbeat cap. -/
  | outOfHeartbeats
  deriving Inhabited

/-- The first token of `stx` that closes a goal without proving it: the keywords `sorry` and `admit`,
or the constant `sorryAx` named directly. Identifiers are whole tokens, so `sorry_lemma` and `h.sorry`
are not matched. -/
partial def cheatToken? : Syntax → Option String
  | .atom _ val => if val == "sorry" || val == "admit" then some val else none
  | .ident _ _ val _ =>
    match val with
    | .str _ last => if last == "sorryAx" then some "sorryAx" else none
    | _ => none
  | .node _ _ args => args.findSome? cheatToken?
  | .missing => none

/-- The heartbeats (raw, as `Core.Context.maxHeartbeats` counts them: `maxHeartbeats` × 1000) the
declaration being elaborated has left before Lean stops it with "(deterministic) timeout", or `none`
when it has no limit (`maxHeartbeats 0`). The same arithmetic as `Core.checkMaxHeartbeatsCore`. -/
def heartbeatsLeft : CoreM (Option Nat) := do
  let ctx ← readThe Core.Context
  if ctx.maxHeartbeats == 0 then
    return none
  return some (ctx.maxHeartbeats - ((← IO.getNumHeartbeats) - ctx.initHeartbeats))

/-- The raw heartbeat cap of one re-check: `perCandidate` thousands (`llmstep.heartbeats`; 0: no cap of
its own), never more than `left?` (what the declaration has left). The result 0 means "no limit", as in
`Core`, so it is 0 only when neither limits it. -/
def candidateCap (perCandidate : Nat) (left? : Option Nat) : Nat :=
  let own := perCandidate * 1000
  match left? with
  | none => own
  | some left => max 1 (if own == 0 then left else min own left)

/-- Below this many raw heartbeats left in the declaration (`maxHeartbeats` 1000), suggestions are
no longer re-checked: a cap that small would reject almost every one of them. -/
def minRecheckHeartbeats : Nat := 1000 * 1000

/-- Runs `text` as a tactic on the main goal of `initial`, capped at `maxHeartbeats` raw heartbeats
(0: no cap). The tactic state (goals, metavariables, messages, info trees) and the thread's heartbeat
count are the same afterwards. -/
def checkCandidate (initial : Tactic.SavedState) (text : String) (maxHeartbeats : Nat) :
    TacticM CheckResult := do
  let .ok stx := Parser.runParserCategory (← getEnv) `tactic text | return .failed
  if (cheatToken? stx).isSome then return .failed
  let saved ← Tactic.saveState
  let heartbeats ← IO.getNumHeartbeats
  initial.restore (restoreInfo := true)
  -- judge the candidate by the messages it logs itself
  modifyThe Core.State fun s => { s with messages := {} }
  let result ← tryCatchRuntimeEx
    (do
      let main ← getMainGoal
      setGoals [main]
      withTheReader Core.Context (fun ctx => { ctx with maxHeartbeats := maxHeartbeats }) <|
        Core.withCurrHeartbeats <|
          Term.withoutErrToSorry <| withoutRecover <| evalTactic stx
      if (← getThe Core.State).messages.hasErrors then
        return CheckResult.failed
      if (← instantiateMVars (mkMVar main)).hasSorry then
        return CheckResult.failed
      return CheckResult.goalsLeft (← getUnsolvedGoals).length)
    (fun ex => pure (if ex.isMaxHeartbeat then CheckResult.outOfHeartbeats else CheckResult.failed))
  saved.restore (restoreInfo := true)
  IO.setNumHeartbeats heartbeats
  return result

end LeanTactic
