"""Checking 8 candidate tactics: parallel within a budget versus one after another.

llmstep checks its candidates inside Lean, sequentially, with no time limit,
so one tactic that loops stalls the editor. leanstep runs every candidate on
the goal's proof state over several warm REPLs and answers at the budget at the
latest; a candidate still running then is reported ``invalid`` (timeout) and its
REPL is replaced. The sequential baseline here is generous to llmstep: it gets
the same per-candidate wall-clock limit (llmstep has none) and the hanging
candidate is placed last, so no REPL restart is counted after it.

Simulated REPL (``python -m leanstep.sim``), so the costs are the simulator's
knobs, printed with the results: import seconds (paid before timing starts,
both sides use warm REPLs with the preamble cached), seconds per tactic,
seconds per command and per proof.

    python benchmarks/suggest_check.py            # 3 runs per cell
    python benchmarks/suggest_check.py --quick    # small costs, 1 run (smoke test)

Writes JSON (``--json``, default benchmarks/results/suggest_check.json) and a
PNG plot (``--png``, default benchmarks/results/suggest_check.png).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import add_output_arguments, run_benchmark, scoped_environ, sim_costs, sim_pool  # noqa: E402
from leanstep.check.source import goal_context_from_context  # noqa: E402
from leanstep.check.tactics import CandidateStatus, TacticChecker  # noqa: E402
from leanstep.generate.base import Candidate  # noqa: E402
from leanstep.plotting import png_figure  # noqa: E402

HEADER = "import Mathlib"
CONTEXT = """import Mathlib

theorem warm_up (n : ℕ) : n + 0 = n := by
  simp

theorem target (a b : ℕ) (h : a < b) : a ≤ b ∧ 0 < b := by
  """
GOOD = ["constructor", "constructor <;> omega", "exact nonsense", "refine ⟨?_, ?_⟩", "skip", "norm_num",
        "intro x", "constructor <;> simp"]
HANG = "sim_hang"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small costs and one run (a smoke test)")
    p.add_argument("--runs", type=int, default=None, help="runs per cell (median reported)")
    p.add_argument("--workers", type=int, default=4, help="REPLs for the parallel checker")
    p.add_argument("--tactic-seconds", type=float, default=None, help="simulated cost of one tactic")
    p.add_argument("--budget", type=float, default=None,
                   help="checking budget (parallel) = per-candidate limit (sequential), seconds")
    p.add_argument("--import-seconds", type=float, default=None, help="simulated `import Mathlib` (before timing)")
    add_output_arguments(p, "suggest_check")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.tactic_seconds = args.tactic_seconds if args.tactic_seconds is not None else (0.1 if args.quick else 0.4)
    args.budget = args.budget if args.budget is not None else (1.0 if args.quick else 3.0)
    args.import_seconds = args.import_seconds if args.import_seconds is not None else (0.3 if args.quick else 2.0)
    return args


def measure(checker: TacticChecker, warm: TacticChecker, ctx, candidates, pool, budget: float) -> tuple[float, dict]:
    pool.wait_warm(120)
    warm.check(ctx, [Candidate("skip", 0.0)] * len(candidates))  # every worker warm with the preamble cached (not timed)
    started = time.monotonic()
    report = checker.check(ctx, candidates, budget=budget)
    elapsed = time.monotonic() - started
    statuses: dict[str, int] = {}
    for c in report.candidates:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    return elapsed, {"statuses": statuses, "timed_out": report.timed_out, "workers": report.workers,
                     "closes_goal": [c.text for c in report.candidates if c.status == CandidateStatus.CLOSES_GOAL]}


def run(args: argparse.Namespace) -> dict:
    knobs = {"import": args.import_seconds, "tactic": args.tactic_seconds, "cmd": 0.01, "proof": 0.02}
    ctx = goal_context_from_context(CONTEXT, heartbeats=200000)
    scenarios = {"8 candidates, none hangs": [Candidate(t, -0.1 * i) for i, t in enumerate(GOOD)],
                 "8 candidates, one hangs": [Candidate(t, -0.1 * i) for i, t in enumerate(GOOD[:7] + [HANG])]}
    results = []
    with scoped_environ(sim_costs(**knobs)), sim_pool(max_repls=args.workers, warm_headers=HEADER) as pool:
        parallel = TacticChecker(pool, budget=args.budget, max_workers=args.workers)
        sequential_budget = len(GOOD) * (args.budget + args.tactic_seconds) + 5
        sequential = TacticChecker(pool, budget=sequential_budget, candidate_timeout=args.budget, max_workers=1)
        warm = TacticChecker(pool, budget=60, max_workers=args.workers)
        for name, candidates in scenarios.items():
            row = {"scenario": name, "sequential_s": [], "parallel_s": []}
            for _ in range(args.runs):
                seq_s, seq_info = measure(sequential, warm, ctx, candidates, pool, sequential_budget)
                par_s, par_info = measure(parallel, warm, ctx, candidates, pool, args.budget)
                row["sequential_s"].append(seq_s)
                row["parallel_s"].append(par_s)
                row["sequential_verdicts"], row["parallel_verdicts"] = seq_info, par_info
            row["sequential_median_s"] = statistics.median(row["sequential_s"])
            row["parallel_median_s"] = statistics.median(row["parallel_s"])
            row["speedup"] = row["sequential_median_s"] / row["parallel_median_s"]
            results.append(row)
    return {
        "benchmark": "suggest_check",
        "quick": args.quick,
        "runs": args.runs,
        "workers": args.workers,
        "budget_s": args.budget,
        "sequential_candidate_limit_s": args.budget,
        "simulated_costs_s": {"import": knobs["import"], "per_tactic": knobs["tactic"], "per_command": knobs["cmd"],
                              "per_proof": knobs["proof"]},
        "candidates": GOOD,
        "hang_candidate": HANG,
        "rows": results,
    }


def print_table(result: dict) -> None:
    c = result["simulated_costs_s"]
    print(f"Simulated REPL: import {c['import']:g} s (before timing), {c['per_tactic']:g} s per tactic, "
          f"{c['per_command']:g} s per command, {c['per_proof']:g} s per proof; "
          f"{result['workers']} REPLs; budget = per-candidate limit = {result['budget_s']:g} s; "
          f"median of {result['runs']} run(s)")
    print()
    print("| scenario | sequential, llmstep-style (s) | parallel, leanstep (s) | speedup |")
    print("|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['scenario']} | {row['sequential_median_s']:.2f} | {row['parallel_median_s']:.2f} | "
              f"{row['speedup']:.1f}x |")


def plot(result: dict, path: Path) -> None:
    rows = result["rows"]
    names = [r["scenario"] for r in rows]
    seq = [r["sequential_median_s"] for r in rows]
    par = [r["parallel_median_s"] for r in rows]
    x = range(len(rows))
    with png_figure(path, figsize=(7, 4)) as (_, ax):
        ax.bar([i - 0.2 for i in x], seq, width=0.4, label="sequential, llmstep-style")
        ax.bar([i + 0.2 for i in x], par, width=0.4, label=f"parallel on {result['workers']} REPLs, leanstep")
        ax.axhline(result["budget_s"], color="grey", linestyle="--", linewidth=1, label="budget")
        for i, r in enumerate(rows):
            ax.text(i + 0.2, par[i], f"{r['speedup']:.1f}x", ha="center", va="bottom")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names)
        ax.set_ylabel("latency until the answer (s)")
        ax.set_title(f"Checking 8 candidates ({result['simulated_costs_s']['per_tactic']:g} s per tactic, simulated)")
        ax.legend()


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("suggest_check", argv, parse_args, run, print_table, plot)


if __name__ == "__main__":
    sys.exit(main())
