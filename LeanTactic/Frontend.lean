import Lean
import LeanTactic.Options
import LeanTactic.Bridge
import LeanTactic.Check

/-!
# The `llmstep` tactic

`llmstep "prefix"` (or bare `llmstep`) asks the leanstep server for next
tactics that start with `prefix`, and shows them with core's "Try these"
(info message, clickable widget, one code action each), goal-closing ones first,
each followed by its status ("closes the goal", "2 goals remain"). The tactic is
an advisor: it never changes the proof state. When the server is down, slow or
answers garbage, it logs a warning and the file still elaborates.
-/

open Lean Elab Tactic

namespace LeanTactic

/-- The JSON request: the main goal, the prefix, the file text up to the call
(llmstep's `context`), and the whole file with the call's position (1-based line,
0-based column in code points) so the server can rebuild the goal on its REPLs. -/
def mkRequest (stx : Syntax) (goal pfx : String) : CoreM Json := do
  let ctx ← readThe Core.Context
  let src := ctx.fileMap.source
  let mut fields : List (String × Json) := [("tactic_state", Json.str goal), ("prefix", Json.str pfx)]
  match stx.getPos? with
  | some pos =>
    let p := ctx.fileMap.toPosition pos
    fields := fields ++ [
      ("context", Json.str (textBefore src p.line p.column)),
      ("source", Json.str src),
      ("position", Json.mkObj [("line", toJson p.line), ("column", toJson p.column)])]
  | none => pure ()
  fields := fields ++ [("file_name", Json.str ctx.fileName)]
  let n := llmstep.n.get ctx.options
  if n > 0 then
    fields := fields ++ [("n", toJson n)]
  return Json.mkObj fields

/-- The status shown after a suggestion (in the widget and in the message). -/
def statusNote (it : Item) : String :=
  if it.status == "closes_goal" then
    "  -- closes the goal"
  else if it.status == "valid" then
    if it.goals == 1 then "  -- 1 goal remains" else s!"  -- {it.goals} goals remain"
  else
    "  -- not checked"

/-- Goal-closing suggestions first, then valid ones, then unchecked ones; server order
(its ranking) within each group; invalid ones dropped. -/
def rank (items : Array Item) : Array Item :=
  items.filter (·.status == "closes_goal") ++ items.filter (·.status == "valid") ++
    items.filter (·.status == "unchecked")

/-- Re-checks `unchecked` suggestions in Lean (see `LeanTactic.Check`). -/
def recheck (initial : Tactic.SavedState) (items : Array Item) (maxHeartbeats : Nat) :
    TacticM (Array Item) := do
  let mut out : Array Item := #[]
  for it in items do
    if it.status == "unchecked" then
      match (← checkCandidate initial it.text maxHeartbeats) with
      | none => pure ()
      | some 0 => out := out.push { it with status := "closes_goal", goals := 0 }
      | some n => out := out.push { it with status := "valid", goals := n }
    else
      out := out.push it
  return out

/-- Shows the suggestions; `stx` is the whole `llmstep ...` call, which a click replaces. -/
def showSuggestions (stx : Syntax) (items : Array Item) : TacticM Unit := do
  if items.isEmpty then
    -- `addSuggestions` throws on an empty array; say it plainly instead
    logInfoAt stx m!"llmstep: no valid suggestions"
    return
  let suggestions := items.map fun it =>
    ({ suggestion := .string it.text, postInfo? := some (statusNote it) } :
      Meta.Tactic.TryThis.Suggestion)
  Meta.Tactic.TryThis.addSuggestions stx suggestions (header := "Try these:")

/-- The tactic's body: ask, check what the server could not, show. -/
def runLlmstep (stx : Syntax) (pfx : String) : TacticM Unit := do
  let initial ← Tactic.saveState
  let goal ← getMainGoal
  let goalText := toString (← Meta.ppGoal goal)
  let request ← mkRequest stx goalText pfx
  match (← requestSuggestions request) with
  | .error msg =>
    -- the proof state is untouched; a warning, never an error, so the file still elaborates
    logWarningAt stx m!"llmstep: {msg}"
  | .ok items =>
    let opts ← getOptions
    let items ← if llmstep.localCheck.get opts then
        recheck initial items (llmstep.heartbeats.get opts)
      else
        pure items
    initial.restore (restoreInfo := true)
    showSuggestions stx (rank items)

/--
`llmstep "prefix"` asks the leanstep server for next tactics starting with `prefix`
and shows the ones that work, goal-closing ones first; click one to replace the call.
`llmstep` alone is `llmstep ""`. It never changes the proof state.

Server: `set_option llmstep.url`, else the `LEANSTEP_URL` environment variable
(llmstep's `LLMSTEP_HOST`/`LLMSTEP_PORT` also work), else `http://localhost:6000`.
Other options: `llmstep.timeout` (ms), `llmstep.localCheck`, `llmstep.heartbeats`,
`llmstep.n`, `llmstep.python`, `llmstep.script`, `llmstep.cache`.
-/
syntax (name := llmstepTactic) "llmstep" (ppSpace str)? : tactic

@[tactic llmstepTactic] def evalLlmstep : Tactic := fun stx => do
  let pfx := match stx[1].getOptional? with
    | some s => (s.isStrLit?).getD ""
    | none => ""
  runLlmstep stx pfx

end LeanTactic
