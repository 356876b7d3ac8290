import LeanTactic.Options
import LeanTactic.Paths
import LeanTactic.Bridge
import LeanTactic.Check
import LeanTactic.Frontend

/-!
# LeanTactic

`import LeanTactic` gives the `llmstep` tactic: `llmstep "prefix"` shows next
tactics from the leanstep server, checked, goal-closing ones first.
-/
