import LeanTactic.Options
import LeanTactic.Paths
import LeanTactic.Bridge
import LeanTactic.Check
import LeanTactic.Frontend
import LeanTactic.Qed

/-!
# LeanTactic

`import LeanTactic` gives the `llmstep` tactic: `llmstep "prefix"` shows next
tactics from the leanstep server, checked, goal-closing ones first; and `llmqed`,
which asks the server for a whole proof of the goal and offers it with "Try this".
-/
