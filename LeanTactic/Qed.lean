import Lean
import LeanTactic.Options
import LeanTactic.Bridge
import LeanTactic.Frontend

/-!
# The `llmqed` tactic

`llmqed` asks the leanstep server to prove the current goal (`POST /prove`: best-first
search over next tactics, then whole proofs repaired with Lean's errors, as the server's
`--strategy` says) and offers the proof it found with "Try this". The proof was checked
by Lean on the server before it is offered. A click replaces the call with it; a proof of
several lines comes with its later lines already indented to the call's column, and core
inserts a string suggestion as it is (`SuggestionText.prettyExtra` returns raw strings
unchanged).

Like `llmstep` it is an advisor: it never changes the proof state. When the server is
down, slow, finds no proof or answers garbage, it logs a warning and the file still
elaborates.
-/

open Lean Elab Tactic

/-- Wall-clock budget of one `llmqed` call, in milliseconds. The server is asked to stop
two seconds before it; the bridge is killed three seconds after it. -/
register_option llmqed.timeout : Nat := {
  defValue := 60000
  descr := "milliseconds `llmqed` waits for the leanstep server to find a proof before giving up with a warning"
}

/-- How the server looks for the proof: `search`, `whole` or `auto`. Empty: the server's `--strategy`. -/
register_option llmqed.strategy : String := {
  defValue := ""
  descr := "how `llmqed` asks the server to prove the goal: search, whole or auto (empty: the server's default)"
}

namespace LeanTactic

/-- What the server's `/prove` reply says. -/
structure QedReply where
  proved : Bool
  proof : String := ""
  strategy : String := ""
  expansions : Nat := 0
  samples : Nat := 0
  totalMs : Nat := 0
  stopped : String := ""

/-- Reads the server's `/prove` reply. -/
def parseQedReply (j : Json) : Except String QedReply := do
  let proved ← match j.getObjValAs? Bool "proved" with
    | .ok b => pure b
    | .error _ => throw s!"malformed reply from the server (no `proved`): {lastChars j.compress 200}"
  let proof := (j.getObjValAs? String "proof").toOption.getD ""
  if proved && proof.isEmpty then
    throw "malformed reply from the server: `proved` without a `proof`"
  let timings := (j.getObjVal? "timings").toOption.getD Json.null
  let totalMs := ((timings.getObjValAs? Float "total_ms").toOption.getD 0).toUInt64.toNat
  return {
    proved := proved
    proof := proof
    strategy := (j.getObjValAs? String "strategy").toOption.getD ""
    expansions := (j.getObjValAs? Nat "expansions").toOption.getD 0
    samples := (j.getObjValAs? Nat "samples").toOption.getD 0
    totalMs := totalMs
    stopped := (j.getObjValAs? String "stopped").toOption.getD "" }

/-- What the search cost, after the proof in the widget and in the message. -/
def qedNote (r : QedReply) : String :=
  s!"  -- proved by {r.strategy} ({r.expansions} expansions, {r.samples} samples, {r.totalMs} ms)"

/-- The `/prove` request: the goal and where the call is (as `llmstep` sends them), the server's
time budget, and the strategy when the option names one. -/
def mkQedRequest (stx : Syntax) (goal : String) : CoreM Json := do
  let opts ← getOptions
  let request ← mkRequest stx goal ""
  let timeoutMs := llmqed.timeout.get opts
  let request := request.setObjVal! "timeout" (toJson (max 1 (timeoutMs / 1000 - 2)))
  let strategy := llmqed.strategy.get opts
  return if strategy == "" then request else request.setObjVal! "strategy" (Json.str strategy)

/-- Asks the server's `/prove` through the bridge (`callServer`), with `llmqed.timeout` as the budget
in place of `llmstep.timeout`. Never throws for a server-side problem. -/
def requestProof (request : Json) : CoreM (Except String QedReply) := do
  let timeoutMs := llmqed.timeout.get (← getOptions)
  let reply ← withOptions (fun o => Lean.Option.set o llmstep.timeout timeoutMs) (callServer "/prove" request)
  return reply >>= parseQedReply

/-- The tactic's body: ask, then offer the proof or warn. -/
def runLlmqed (stx : Syntax) : TacticM Unit := do
  let goal ← getMainGoal
  let goalText := toString (← Meta.ppGoal goal)
  let request ← mkQedRequest stx goalText
  match (← requestProof request) with
  | .error msg =>
    -- the proof state is untouched; a warning, never an error, so the file still elaborates
    logWarningAt stx m!"llmqed: {msg}"
  | .ok r =>
    if r.proved then
      Meta.Tactic.TryThis.addSuggestion stx { suggestion := .string r.proof, postInfo? := some (qedNote r) }
        (header := "Try this: ")
    else
      let why := if r.stopped == "" then "no proof" else r.stopped
      logWarningAt stx m!"llmqed: no proof found ({why}; {r.expansions} expansions, {r.samples} samples, \
        {r.totalMs} ms)"

/--
`llmqed` asks the leanstep server to prove the current goal and offers the proof it found
(checked by Lean on the server) with "Try this"; click it to replace the call. It never
changes the proof state; when no proof is found it says so in a warning.

Options: `llmqed.timeout` (ms, default 60000), `llmqed.strategy` (`search`, `whole`, `auto`;
empty: the server's), and `llmstep.url`, `llmstep.python`, `llmstep.script` as for `llmstep`.
-/
syntax (name := llmqedTactic) "llmqed" : tactic

@[tactic llmqedTactic] def evalLlmqed : Tactic := fun stx => runLlmqed stx

end LeanTactic
