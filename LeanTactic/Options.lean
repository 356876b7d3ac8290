import Lean

/-!
# Options of the `llmstep` tactic

Set them with `set_option llmstep.timeout 20000 in ...` or in the lakefile's
`leanOptions`. Environment variables (`LEANSTEP_URL`, `LLMSTEP_HOST`/`LLMSTEP_PORT`,
`LEANSTEP_TIMEOUT`) are read by the bridge script; an option set here wins.
-/

/-- Base URL of the leanstep server. Empty: the bridge decides (`LEANSTEP_URL`,
then `LLMSTEP_HOST`/`LLMSTEP_PORT`, then `http://localhost:6000`). -/
register_option llmstep.url : String := {
  defValue := ""
  descr := "leanstep server URL for `llmstep` (empty: LEANSTEP_URL or http://localhost:6000)"
}

/-- Wall-clock budget of one `llmstep` call, in milliseconds: the bridge ends itself when it is spent,
and its process group is killed 3 s later at the latest, so elaboration never waits longer.
`0` leaves no time at all: the call then only warns. -/
register_option llmstep.timeout : Nat := {
  defValue := 10000
  descr := "milliseconds `llmstep` waits for the leanstep server before giving up with a warning (at least 1)"
}

/-- Re-check suggestions the server could not check (status `unchecked`) in Lean itself. -/
register_option llmstep.localCheck : Bool := {
  defValue := true
  descr := "re-check `unchecked` suggestions locally (heartbeat-capped) before showing them"
}

/-- The Python interpreter that runs the bridge script. -/
register_option llmstep.python : String := {
  defValue := "python3"
  descr := "Python interpreter used to run leanstep's python/leanstep_bridge.py bridge"
}

/-- Path of `python/leanstep_bridge.py`. Empty: `LEANSTEP_SCRIPT`, then next to this package's sources. -/
register_option llmstep.script : String := {
  defValue := ""
  descr := "path of leanstep's python/leanstep_bridge.py (empty: found next to the LeanTactic sources)"
}

/-- Number of candidates to ask the server for. `0`: the server's default. -/
register_option llmstep.n : Nat := {
  defValue := 0
  descr := "number of candidates `llmstep` asks for (0: the server's default)"
}

/-- Heartbeat cap (in thousands, like `maxHeartbeats`) for each local re-check; never more than the
declaration has left of its own `maxHeartbeats`, and the heartbeats a re-check uses are given back, so
re-checking never makes the user's proof time out. `0`: no cap of its own. -/
register_option llmstep.heartbeats : Nat := {
  defValue := 20000
  descr := "heartbeats (thousands) allowed to each locally re-checked suggestion (0: only the declaration's own limit)"
}

/-- Reuse the server's answer for an identical request (same goal, prefix, context) in this
Lean process, so re-elaborating a file does not query the model again. -/
register_option llmstep.cache : Bool := {
  defValue := true
  descr := "cache `llmstep` answers per (goal, prefix, context) for the lifetime of the Lean process"
}
