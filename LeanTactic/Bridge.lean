import Lean
import Std.Data.HashMap
import LeanTactic.Options
import LeanTactic.Paths

/-!
# Talking to the leanstep server

The tactic never speaks HTTP itself: it runs the stdlib-only bridge
`python/leanstep_bridge.py`, writes ONE JSON request on its stdin (never on
argv, so large files and secrets stay out of the process list), and reads one
line of JSON back. The bridge ends itself when the `llmstep.timeout` budget is
spent; on top of that its whole process group (it runs in a session of its own)
is killed when the budget plus start-up slack is spent, and when Lean cancels
the elaboration, and every wait after that has a deadline. Every failure becomes
a `String` for a warning: a missing server must never break the file.

The interface for tactics: `callServer route request` (any route of the server,
the JSON reply) and, on top of it, `requestSuggestions` (`/suggest`, parsed and
cached).

Bridge contract (see `python/leanstep_bridge.py`): exit 0 and the server's
JSON on success; exit 1 (bad request), 2 (server unreachable), 3 (timeout) or 4
(HTTP error or malformed reply) with one line `{"error": "..."}` otherwise.
-/

open Lean

namespace LeanTactic

/-- One suggestion as the server reports it. `goals`: number of goals left after it. -/
structure Item where
  text : String
  status : String
  goals : Nat := 0
  deriving Inhabited, Repr

/-- Where this package was compiled from (see `LeanTactic.Paths`). -/
def compiledFrom : String := leanstep_source_file%

/-- Builds a `String` from characters without relying on `String.mk`/`String.ofList`,
whose names moved across Lean versions. -/
def ofChars (cs : List Char) : String := cs.foldl String.push ""

/-- The string without trailing whitespace. -/
def dropTrailingWs (s : String) : String :=
  ofChars (s.toList.reverse.dropWhile Char.isWhitespace).reverse

/-- The last `n` characters of `s`. -/
def lastChars (s : String) (n : Nat) : String :=
  ofChars (s.toList.drop (s.length - n))

/-- The text of `src` before (1-based) line `line`, (0-based, code points) column `col`:
the `context` llmstep's servers expect. Empty when `line = 0`. -/
def textBefore (src : String) (line col : Nat) : String := Id.run do
  let mut out := ""
  let mut l := 1
  let mut c := 0
  for ch in src.toList do
    if l > line || (l == line && c ≥ col) then break
    out := out.push ch
    if ch == '\n' then
      l := l + 1
      c := 0
    else
      c := c + 1
  return out

/-- Candidate locations of `python/leanstep_bridge.py`, most specific first. -/
def scriptCandidates : IO (Array System.FilePath) := do
  let mut cands : Array System.FilePath := #[]
  -- next to the sources this package was compiled from: <pkg>/LeanTactic/Bridge.lean
  let here : System.FilePath := ⟨compiledFrom⟩
  let pkgDir := (here.parent.bind (·.parent)).getD ⟨"."⟩
  cands := cands.push (pkgDir / "python" / "leanstep_bridge.py")
  -- Lake puts every package's source directory on LEAN_SRC_PATH for the language server
  if let some srcPath := (← IO.getEnv "LEAN_SRC_PATH") then
    for dir in System.SearchPath.parse srcPath do
      cands := cands.push (dir / "python" / "leanstep_bridge.py")
  cands := cands.push (System.FilePath.mk "python" / "leanstep_bridge.py")
  cands := cands.push (System.FilePath.mk ".lake" / "packages" / "leanstep" / "python" / "leanstep_bridge.py")
  return cands

/-- The bridge script: the `llmstep.script` option, `LEANSTEP_SCRIPT`, or the first
candidate that exists. -/
def findScript (opts : Options) : IO (Except String System.FilePath) := do
  let opt := llmstep.script.get opts
  if opt != "" then return .ok ⟨opt⟩
  if let some env := (← IO.getEnv "LEANSTEP_SCRIPT") then
    if env != "" then return .ok ⟨env⟩
  let cands ← scriptCandidates
  for c in cands do
    if (← c.pathExists) then return .ok c
  return .error s!"could not find leanstep's python/leanstep_bridge.py (looked at {cands.toList.map (·.toString)}); \
    set `set_option llmstep.script \"/path/to/leanstep_bridge.py\"` or LEANSTEP_SCRIPT"

/-- What running the bridge produced. -/
structure BridgeOutput where
  exitCode : UInt32
  stdout : String
  stderr : String

/-- How long to wait for a killed process (and for `kill` itself) to exit. -/
def killWaitMs : Nat := 1000

/-- Polls `child` until it exits or `ms` milliseconds pass: its exit code, or `none`. -/
def waitExit {cfg : IO.Process.StdioConfig} (child : IO.Process.Child cfg) (ms : Nat) : IO (Option UInt32) := do
  let deadline := (← IO.monoMsNow) + ms
  repeat
    if let some code := (← child.tryWait) then
      return some code
    if (← IO.monoMsNow) ≥ deadline then
      return none
    IO.sleep 10
  return none

/-- The result of `task` if it finishes before the monotonic clock reaches `deadline` (ms), else `none`;
the task is then left to finish on its own. -/
def waitUntil {α : Type} (task : Task α) (deadline : Nat) : BaseIO (Option α) := do
  repeat
    if (← IO.hasFinished task) then
      return some task.get
    if (← IO.monoMsNow) ≥ deadline then
      return none
    IO.sleep 10
  return none

/-- Kills the bridge's whole process group: it runs in a session of its own (`setsid`), so a wrapper set as
`llmstep.python` and whatever it started go too. `Child.kill` first (depending on the Lean version it signals the
child, or its group, with SIGTERM or SIGKILL), then `kill -KILL -- -PGID`, waited for at most `killWaitMs`.
Failures are ignored: the processes may be gone already. -/
def killGroup {cfg : IO.Process.StdioConfig} (child : IO.Process.Child cfg) : IO Unit := do
  try child.kill catch _ => pure ()
  try
    let killer ← IO.Process.spawn {
      cmd := "kill", args := #["-KILL", "--", s!"-{child.pid}"], stdin := .null, stdout := .null, stderr := .null }
    let _ ← waitExit killer killWaitMs
  catch _ => pure ()

/-- Runs `python script --timeout SECS --route ROUTE` with `input` on stdin, in a session of its own. Gives up
after `budgetMs`, or when `cancel?` is set, killing the process group. Every wait has a deadline: after the
child exits, its output is read until the budget ends (at least `killWaitMs`), and if something it started
still holds the pipes then, that is killed and the answer given up. `Except.error` says why. -/
def runBridge (python : String) (script : System.FilePath) (route input : String) (timeoutMs budgetMs : Nat)
    (env : Array (String × Option String)) (cancel? : Option IO.CancelToken) :
    IO (Except String BridgeOutput) := do
  let secs := Float.ofNat timeoutMs / 1000.0
  let child ← IO.Process.spawn {
    cmd := python
    args := #[script.toString, "--timeout", toString secs, "--route", route]
    env := env
    stdin := .piped
    stdout := .piped
    stderr := .piped
    setsid := true
  }
  let (stdin, child) ← child.takeStdin
  -- drain both pipes concurrently so a chatty child can never block on a full pipe
  let outTask ← IO.asTask child.stdout.readToEnd Task.Priority.dedicated
  let errTask ← IO.asTask child.stderr.readToEnd Task.Priority.dedicated
  -- Write on a task too: a child that never reads cannot block us past the deadline. The task
  -- owns the only reference to `stdin`, so the pipe closes (EOF for the child) when it ends; a
  -- write error (the child exited early) is left in the task, the exit code and stderr tell why.
  let _writer ← IO.asTask (do stdin.putStr input; stdin.flush) Task.Priority.dedicated
  let deadline := (← IO.monoMsNow) + budgetMs
  let mut code? : Option UInt32 := none
  let mut cancelled := false
  repeat
    if let some code := (← child.tryWait) then
      code? := some code
      break
    if let some tk := cancel? then
      if (← tk.isSet) then
        cancelled := true
        break
    if (← IO.monoMsNow) ≥ deadline then
      break
    IO.sleep 10
  match code? with
  | none =>
    killGroup child
    let _ ← waitExit child killWaitMs
    if cancelled then
      return .error "cancelled"
    return .error s!"no answer from the leanstep server within {timeoutMs} ms \
      (set_option llmstep.timeout <ms> to wait longer)"
  | some code =>
    let readDeadline := max deadline ((← IO.monoMsNow) + killWaitMs)
    match (← waitUntil outTask readDeadline), (← waitUntil errTask readDeadline) with
    | some out, some err =>
      return .ok { exitCode := code, stdout := (← IO.ofExcept out), stderr := (← IO.ofExcept err) }
    | _, _ =>
      killGroup child
      return .error s!"the bridge `{python}` exited (code {code}) but a process it started kept its output \
        open; that process group was killed"

/-- Reads the bridge's stdout: the server's JSON reply, or the `{"error": ...}` the bridge printed. -/
def parseReply (out : BridgeOutput) : Except String Json := do
  let text := dropTrailingWs out.stdout
  let j ← match Json.parse text with
    | .ok j => pure j
    | .error e =>
      if out.exitCode != 0 then
        throw s!"the bridge exited with code {out.exitCode}: {lastChars (dropTrailingWs out.stderr) 400}"
      else
        throw s!"malformed reply from the bridge ({e}): {lastChars text 200}"
  if let .ok err := j.getObjValAs? String "error" then
    throw err
  if out.exitCode != 0 then
    throw s!"the bridge exited with code {out.exitCode}: {lastChars (dropTrailingWs out.stderr) 400}"
  return j

/-- Reads one suggestion object of the server's `/suggest` reply. -/
def parseItem (j : Json) : Except String Item := do
  let text ← j.getObjValAs? String "text"
  let status := (j.getObjValAs? String "status").toOption.getD "unchecked"
  let goals := ((j.getObjValAs? (Array Json) "goals").toOption.getD #[]).size
  return { text, status, goals }

/-- The suggestions of a `/suggest` reply. -/
def parseSuggestions (j : Json) : Except String (Array Item) := do
  let items ← match j.getObjValAs? (Array Json) "suggestions" with
    | .ok items => pure items
    | .error _ => throw s!"malformed reply from the server (no `suggestions` array): {lastChars j.compress 200}"
  items.mapM fun item => match parseItem item with
    | .ok it => pure it
    | .error e => throw s!"malformed suggestion in the server's reply: {e}"

/-- Sends `request` to the server's `route` (`"/suggest"`, or another tactic's) through the bridge and
returns the server's JSON reply. Never throws for a server-side problem: `Except.error` carries the text
of the warning to show. The budget is `llmstep.timeout`; 0 is refused here, before anything runs. -/
def callServer (route : String) (request : Json) : CoreM (Except String Json) := do
  let opts ← getOptions
  let timeoutMs := llmstep.timeout.get opts
  if timeoutMs == 0 then
    return .error "`llmstep.timeout` is 0, which leaves no time to ask the server: set it to the milliseconds \
      to wait (`set_option llmstep.timeout 10000`, the default)"
  match (← findScript opts) with
  | .error e => return .error e
  | .ok script =>
    let url := llmstep.url.get opts
    let env : Array (String × Option String) :=
      if url != "" then #[("LEANSTEP_URL", some url)] else #[]
    let cancel? := (← readThe Core.Context).cancelTk?
    let python := llmstep.python.get opts
    -- the bridge ends itself at `timeoutMs`; the rest of the budget is the interpreter's start-up
    let run := runBridge python script route request.compress timeoutMs (timeoutMs + 3000) env cancel?
    let result : Except String BridgeOutput ← do
      match (← EIO.toBaseIO run) with
      | .ok r => pure r
      | .error e => pure (.error s!"could not run the bridge `{python} {script}`: {e}")
    -- if Lean cancelled this elaboration, stop here (the bridge's process group is already killed)
    Core.checkInterrupted
    return result.bind parseReply

/-- Answers already received in this Lean process, keyed by the request (without the file). -/
initialize replyCache : IO.Ref (Std.HashMap String (Array Item)) ← IO.mkRef {}

/-- The cache key: what determines the answer (goal, prefix, context, n, server). -/
def cacheKey (request : Json) (url : String) : String :=
  let field (k : String) : Json := (request.getObjVal? k).toOption.getD Json.null
  (Json.mkObj [("tactic_state", field "tactic_state"), ("prefix", field "prefix"),
    ("context", field "context"), ("n", field "n"), ("url", Json.str url)]).compress

/-- Asks the server's `/suggest` for suggestions (answers are cached per request, see `cacheKey`). Never
throws for a server-side problem: `Except.error` carries the text of the warning to show. -/
def requestSuggestions (request : Json) : CoreM (Except String (Array Item)) := do
  let opts ← getOptions
  let useCache := llmstep.cache.get opts
  let key := cacheKey request (llmstep.url.get opts)
  if useCache then
    if let some items := (← replyCache.get).get? key then
      return .ok items
  match (← callServer "/suggest" request) >>= parseSuggestions with
  | .error e => return .error e
  | .ok items =>
    if useCache then
      replyCache.modify fun m =>
        let m : Std.HashMap String (Array Item) := if m.size ≥ 512 then {} else m
        m.insert key items
    return .ok items

end LeanTactic
