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

/-- What `recheck` did: the suggestions to show, and how many it could not check and why. -/
structure Rechecked where
  items : Array Item
  /-- left `unchecked`: the declaration had too few heartbeats left to re-check them -/
  notChecked : Nat := 0
  /-- dropped: they ran out of their heartbeat cap -/
  outOfHeartbeats : Nat := 0
  /-- the smallest cap a suggestion was given (raw heartbeats; 0: none) -/
  cap : Nat := 0

/-- Re-checks `unchecked` suggestions in Lean (see `LeanTactic.Check`), each capped by `llmstep.heartbeats`
and by what the declaration has left; once that is below `minRecheckHeartbeats`, the rest stay unchecked. -/
def recheck (initial : Tactic.SavedState) (items : Array Item) (perCandidate : Nat) : TacticM Rechecked := do
  let mut out : Rechecked := { items := #[] }
  for it in items do
    if it.status != "unchecked" then
      out := { out with items := out.items.push it }
      continue
    let left? ← heartbeatsLeft
    if left?.any (· < minRecheckHeartbeats) then
      out := { out with items := out.items.push it, notChecked := out.notChecked + 1 }
      continue
    let cap := candidateCap perCandidate left?
    out := { out with cap := if out.cap == 0 then cap else min out.cap cap }
    match (← checkCandidate initial it.text cap) with
    | .goalsLeft 0 => out := { out with items := out.items.push { it with status := "closes_goal", goals := 0 } }
    | .goalsLeft n => out := { out with items := out.items.push { it with status := "valid", goals := n } }
    | .outOfHeartbeats => out := { out with outOfHeartbeats := out.outOfHeartbeats + 1 }
    | .failed => pure ()
  return out

/-- Says in the Infoview what re-checking could not do (nothing when it did everything). -/
def reportRecheck (stx : Syntax) (r : Rechecked) : CoreM Unit := do
  if r.notChecked > 0 then
    let ctx ← readThe Core.Context
    logInfoAt stx m!"llmstep: {r.notChecked} suggestion(s) shown unchecked: this declaration has less than \
      {minRecheckHeartbeats / 1000} of its maxHeartbeats {ctx.maxHeartbeats / 1000} left, too few to re-check \
      them (raise it with `set_option maxHeartbeats N in`)"
  if r.outOfHeartbeats > 0 then
    logInfoAt stx m!"llmstep: {r.outOfHeartbeats} suggestion(s) dropped: they did not finish within \
      {r.cap / 1000} heartbeats (`llmstep.heartbeats`, never more than the declaration has left)"

/-- `text` with every line after the first indented by `column` spaces. Core inserts a `.string` suggestion
verbatim (`SuggestionText.prettyExtra` returns strings as they are), so a multi-line suggestion written from
column 0 must be shifted to the call's column to stay one tactic block. Blank lines stay empty. -/
def indentContinuation (text : String) (column : Nat) : String :=
  match text.splitOn "\n" with
  | [] => text
  | first :: rest =>
    let pad := ofChars (List.replicate column ' ')
    rest.foldl (fun acc line => acc ++ "\n" ++ (if line.toList.all Char.isWhitespace then "" else pad ++ line)) first

/-- Shows the suggestions; `stx` is the whole `llmstep ...` call, which a click replaces, at `column`. -/
def showSuggestions (stx : Syntax) (column : Nat) (items : Array Item) : TacticM Unit := do
  if items.isEmpty then
    -- `addSuggestions` throws on an empty array; say it plainly instead
    logInfoAt stx m!"llmstep: no valid suggestions"
    return
  let suggestions := items.map fun it =>
    ({ suggestion := .string (indentContinuation it.text column), postInfo? := some (statusNote it) } :
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
    let rechecked ← if llmstep.localCheck.get opts then
        recheck initial items (llmstep.heartbeats.get opts)
      else
        pure { items }
    -- back to the call's state (this also drops what the re-checks logged), then report
    initial.restore (restoreInfo := true)
    reportRecheck stx rechecked
    let fileMap ← getFileMap
    let column := match stx.getPos? with
      | some pos => (fileMap.toPosition pos).column
      | none => 0
    showSuggestions stx column (rank rechecked.items)

/--
`llmstep "prefix"` asks the leanstep server for next tactics starting with `prefix`
and shows the ones that work, goal-closing ones first; click one to replace the call.
`llmstep` alone is `llmstep ""`. It never changes the proof state.

Server: `set_option llmstep.url`, else the `LEANSTEP_URL` environment variable
(llmstep's `LLMSTEP_HOST`/`LLMSTEP_PORT` also work), else `http://localhost:6000`.
Other options: `llmstep.timeout` (ms, at least 1), `llmstep.localCheck`, `llmstep.heartbeats`,
`llmstep.n`, `llmstep.python`, `llmstep.script`, `llmstep.cache`.
-/
syntax (name := llmstepTactic) "llmstep" (ppSpace str)? : tactic

@[tactic llmstepTactic] def evalLlmstep : Tactic := fun stx => do
  let pfx := match stx[1].getOptional? with
    | some s => (s.isStrLit?).getD ""
    | none => ""
  runLlmstep stx pfx

end LeanTactic
