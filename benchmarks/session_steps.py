"""Proof sessions as an agent drives them over HTTP: one step, a multi-attempt of 8, a replay after a lost REPL.

A server (the app over ``build_services``, served by waitress in this process)
on simulated REPLs; a ``requests`` client starts a session on a theorem
statement and then:

* steps down one proof, each step a new tactic on the newest state (p50/p95);
* runs multi-attempts of 8 new tactics on one state, and the same 8 tactics as
  8 steps one after another, side by side;
* loses every REPL (killed, noticed and replaced by warm ones before timing: the
  replacement's import is not counted), then steps from a state at depth d:
  the step rebuilds the state on the new REPL (declaration, then d tactics). The
  same step on a REPL that still holds the state is timed beside it.

Each scenario runs twice: with the simulator's costs at zero (leanstep's own
overhead: HTTP, the pool, the checker's threads) and with simulated Lean costs
(per tactic, per command), printed with the figures.

    python benchmarks/session_steps.py            # leanstep bench sessions
    python benchmarks/session_steps.py --quick    # fewer steps (a smoke test)

Writes JSON (``--json``, default benchmarks/results/session_steps.json) and a PNG
(``--png``, default benchmarks/results/session_steps.png).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    add_output_arguments,
    print_table,
    run_benchmark,
    scoped_environ,
    serving,
    sim_config,
    sim_costs,
    warm_services,
)
from leanstep.plotting import png_figure  # noqa: E402
from leanstep.repl.pool import ReplPool  # noqa: E402
from leanstep.repl.process import ReplError  # noqa: E402
from leanstep.repl.protocol import CommandRequest  # noqa: E402

HEADER = "import Mathlib"
STATEMENT = "theorem target (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b"
HELD_SAMPLES = 9  # steps from a state its REPL holds, timed beside each depth's replays


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and attempts (a smoke test)")
    p.add_argument("--steps", type=int, default=None, help="steps timed down one proof")
    p.add_argument("--attempts", type=int, default=None, help="multi-attempts of 8 timed")
    p.add_argument("--depths", default="1,8,32", help="depths of the states stepped from after a lost REPL")
    p.add_argument("--repls", type=int, default=4, help="REPLs in the pool")
    p.add_argument("--replay-runs", type=int, default=None, help="lost-REPL replays timed per depth (median)")
    p.add_argument("--tactic-seconds", type=float, default=0.02, help="simulated cost of one tactic")
    p.add_argument("--cmd-seconds", type=float, default=0.05, help="simulated cost of one command (a declaration)")
    p.add_argument("--import-seconds", type=float, default=1.0, help="simulated `import Mathlib` (never timed)")
    add_output_arguments(p, "session_steps")
    args = p.parse_args(argv)
    args.steps = args.steps or (20 if args.quick else 200)
    args.attempts = args.attempts or (5 if args.quick else 30)
    args.depths = [int(d) for d in args.depths.split(",")]
    args.replay_runs = args.replay_runs or (1 if args.quick else 5)
    return args


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000}


class Agent:
    """An HTTP client of the ``/sessions`` routes that times every call."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()
        self.fresh = 0

    def tactic(self) -> str:
        """A tactic never sent before (a known one is answered from the tree, without Lean)."""
        self.fresh += 1
        return f"intro h{self.fresh}"

    def post(self, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = self.http.post(self.url + path, json=body, timeout=120)
        elapsed = time.perf_counter() - started
        if response.status_code >= 300:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
        return elapsed, response.json()

    def start(self) -> str:
        return self.post("/sessions", {"statement": STATEMENT, "header": HEADER})[1]["id"]

    def step(self, session: str, state: int, tactic: str | None = None) -> tuple[float, int]:
        elapsed, answer = self.post(f"/sessions/{session}/states/{state}/tactic", {"tactic": tactic or self.tactic()})
        if answer["state"] is None:
            raise RuntimeError(f"step refused: {answer}")
        return elapsed, answer["state"]

    def attempt(self, session: str, state: int, tactics: list[str]) -> float:
        elapsed, answer = self.post(f"/sessions/{session}/states/{state}/attempt", {"tactics": tactics})
        if any(r["state"] is None for r in answer["results"]):
            raise RuntimeError(f"attempt refused: {answer}")
        return elapsed

    def descend(self, session: str, depth: int) -> int:
        state = 0
        for _ in range(depth):
            state = self.step(session, state)[1]
        return state


def lose_every_repl(pool: ReplPool, count: int) -> None:
    """Kill every REPL and let the pool notice and replace each; wait until the replacements are warm."""
    with contextlib.ExitStack() as held:
        workers = [held.enter_context(pool.acquire(HEADER)) for _ in range(count)]
        for worker in workers:
            worker.interrupt()
            with contextlib.suppress(ReplError):
                worker.run(CommandRequest("def lost := 1", env=worker.header_env), 5)
    pool.wait_warm(120)  # each release above reserved a replacement, which is starting now


def scenario(args: argparse.Namespace, costs: dict[str, float]) -> dict[str, Any]:
    config = sim_config(max_repls=args.repls, warm_headers=HEADER, max_session_states=10_000,
                        max_restarts_per_minute=1000)
    with scoped_environ(sim_costs(**costs)), warm_services(config, suggest=False) as services, \
            serving(services) as url:
        agent = Agent(url)
        warm = agent.start()
        agent.attempt(warm, 0, [agent.tactic() for _ in range(args.repls * 2)])  # every REPL holds the goal

        session = agent.start()
        state, steps = 0, []
        for _ in range(args.steps):
            elapsed, state = agent.step(session, state)
            steps.append(elapsed)

        attempts, sequential = [], []
        for _ in range(args.attempts):
            attempts.append(agent.attempt(session, 0, [agent.tactic() for _ in range(8)]))
            started = time.perf_counter()
            for _ in range(8):
                agent.step(session, 0)
            sequential.append(time.perf_counter() - started)

        replays = []
        for depth in args.depths:
            session = agent.start()
            deep = agent.descend(session, depth)
            held = [agent.step(session, deep)[0] for _ in range(HELD_SAMPLES)]
            rebuilt, replayed = [], []
            for _ in range(args.replay_runs):
                lose_every_repl(services.pool, args.repls)
                before = services.sessions.stats().replayed_tactics
                rebuilt.append(agent.step(session, deep)[0])
                replayed.append(services.sessions.stats().replayed_tactics - before)
            replays.append({"depth": depth, "held_step_ms": statistics.median(held) * 1000,
                            "rebuilt_step_ms": statistics.median(rebuilt) * 1000,
                            "replay_cost_ms": (statistics.median(rebuilt) - statistics.median(held)) * 1000,
                            "tactics_replayed": replayed})
        return {"costs_s": costs, "step": percentiles(steps), "attempt_8": percentiles(attempts),
                "sequential_8_steps": percentiles(sequential), "replay": replays}


def run(args: argparse.Namespace) -> dict[str, Any]:
    zero = {"import": args.import_seconds, "tactic": 0.0, "cmd": 0.0, "proof": 0.0}
    lean = {"import": args.import_seconds, "tactic": args.tactic_seconds, "cmd": args.cmd_seconds, "proof": 0.0}
    return {"quick": args.quick, "repls": args.repls, "steps": args.steps, "attempts": args.attempts,
            "scenarios": {"zero simulated cost": scenario(args, zero), "simulated Lean costs": scenario(args, lean)}}


def report(result: dict[str, Any]) -> None:
    print(f"Proof sessions over HTTP, {result['repls']} simulated REPLs; {result['steps']} steps down one proof, "
          f"{result['attempts']} multi-attempts of 8 (each beside the same 8 as steps one after another)")
    rows = []
    for name, s in result["scenarios"].items():
        c = s["costs_s"]
        rows.append([name, f"{c['tactic']:g}/{c['cmd']:g}", s["step"]["p50_ms"], s["step"]["p95_ms"],
                     s["attempt_8"]["p50_ms"], s["attempt_8"]["p95_ms"], s["sequential_8_steps"]["p50_ms"],
                     s["sequential_8_steps"]["p50_ms"] / s["attempt_8"]["p50_ms"]])
    print_table(rows, ["scenario", "tactic/cmd s", "step p50 ms", "step p95 ms", "attempt-8 p50 ms",
                       "attempt-8 p95 ms", "8 steps p50 ms", "8 steps / attempt"])
    print()
    rows = []
    for name, s in result["scenarios"].items():
        for r in s["replay"]:
            rows.append([name, r["depth"], r["held_step_ms"], r["rebuilt_step_ms"], r["replay_cost_ms"],
                         ",".join(str(n) for n in r["tactics_replayed"])])
    print("A step from a state at depth d: on the REPL that holds it, and on a new REPL after every REPL was lost")
    print_table(rows, ["scenario", "depth", "held step ms", "rebuilt step ms", "replay cost ms", "tactics replayed"])


def plot(result: dict[str, Any], path: Path) -> None:
    with png_figure(path, nrows=1, ncols=2, figsize=(10, 4)) as (_, (left, right)):
        names = list(result["scenarios"])
        width = 0.25
        for i, key in enumerate(("step", "attempt_8", "sequential_8_steps")):
            values = [result["scenarios"][n][key]["p50_ms"] for n in names]
            left.bar([x + (i - 1) * width for x in range(len(names))], values, width=width,
                     label={"step": "one step", "attempt_8": "attempt of 8", "sequential_8_steps": "8 steps"}[key])
        left.set_xticks(range(len(names)))
        left.set_xticklabels(names)
        left.set_ylabel("p50 latency (ms)")
        left.set_title("Steps and multi-attempts")
        left.legend()
        for name in names:
            replay = result["scenarios"][name]["replay"]
            right.plot([r["depth"] for r in replay], [r["rebuilt_step_ms"] for r in replay], marker="o",
                       label=f"{name}: after a lost REPL")
            right.plot([r["depth"] for r in replay], [r["held_step_ms"] for r in replay], marker="x",
                       linestyle="--", label=f"{name}: REPL holds the state")
        right.set_xlabel("depth of the state (tactics from the root)")
        right.set_ylabel("step latency (ms)")
        right.set_title("Replaying a session on a new REPL")
        right.legend(fontsize=7)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("session_steps", argv, parse_args, run, report, plot)


if __name__ == "__main__":
    sys.exit(main())
