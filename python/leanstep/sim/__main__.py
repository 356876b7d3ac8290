"""`python -m leanstep.sim`: run the simulated Lean REPL on stdin/stdout."""

from leanstep.sim.repl import main

if __name__ == "__main__":
    raise SystemExit(main())
