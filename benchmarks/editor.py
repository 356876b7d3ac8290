"""An editing session: 20 ``llmstep`` calls in one file, the cursor moving down one proof.

Between calls the file above the current theorem (the preamble) does not
change. leanstep elaborates that preamble once per REPL and keeps its env id
(``Worker.preamble``, keyed by content hash); every later call sends only the
current declaration (ending in ``sorry`` at the cursor) and the candidate
tactics. A header-only cache, as in Kimina's server, keeps the imported header
warm but re-elaborates the preamble on every call. Both run the same checker
(``TacticChecker(cache_preamble=...)``) on the same simulated REPLs; generation
is not part of the timing.

Reported per configuration: REPL requests, simulated Lean seconds (the
simulator's cost knobs times the requests that incur them) and the latency of
each call.

    python benchmarks/editor.py            # 40 preamble theorems
    python benchmarks/editor.py --quick    # 10 preamble theorems, cheaper proofs (smoke test)

Writes JSON (``--json``, default benchmarks/results/editor.json) and a PNG plot
(``--png``, default benchmarks/results/editor.png).
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
from leanstep.check.source import goal_context_from_source  # noqa: E402
from leanstep.check.tactics import TacticChecker  # noqa: E402
from leanstep.generate.base import Candidate  # noqa: E402
from leanstep.plotting import png_figure  # noqa: E402

HEADER = "import Mathlib"
CANDIDATES = ("omega", "simp", "exact nope", "skip")


def make_file(theorems: int, steps: int) -> tuple[str, list[str]]:
    """A file with ``theorems`` proved lemmas and a target proof of ``steps`` lines (before the calls)."""
    parts = [HEADER, "", "namespace Session", ""]
    for i in range(theorems):
        parts += [f"theorem lemma_{i} (n : ℕ) : n + {i} = {i} + n := by", "  omega", ""]
    parts.append("theorem target (a b : ℕ) (h : a < b) : a ≤ b := by")
    steps_text = [f"  have h{i} : {i} + 0 = {i} := by simp" for i in range(steps)]
    return "\n".join(parts) + "\n", steps_text


def trace(theorems: int, calls: int) -> list[tuple[str, tuple[int, int]]]:
    """(source, position) of each call: the cursor after 0, 1, ..., calls-1 proof lines."""
    head, steps = make_file(theorems, calls)
    out = []
    for i in range(calls):
        body = "\n".join(steps[:i] + ['  llmstep ""', "  all_goals omega", "", "end Session", ""])
        source = head + body
        line = head.count("\n") + i + 1
        out.append((source, (line, 2)))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller preamble and cheaper proofs (a smoke test)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--theorems", type=int, default=None, help="theorems in the preamble")
    p.add_argument("--proof-seconds", type=float, default=None, help="simulated cost of elaborating one proof")
    p.add_argument("--workers", type=int, default=2)
    add_output_arguments(p, "editor")
    args = p.parse_args(argv)
    args.theorems = args.theorems if args.theorems is not None else (10 if args.quick else 40)
    args.proof_seconds = args.proof_seconds if args.proof_seconds is not None else (0.02 if args.quick else 0.05)
    return args


def simulated_seconds(counts: dict[str, int], costs: dict[str, float], theorems: int) -> float:
    preamble = costs["cmd"] + theorems * costs["proof"]
    declaration = costs["cmd"] + costs["proof"]
    return counts["preamble"] * preamble + counts["declaration"] * declaration + counts["tactic"] * costs["tactic"]


def settle(pool, header: str, workers: int) -> None:
    """Wait until background work of the last call (a preamble still elaborating) has finished."""
    from leanstep.repl.pool import Priority

    held = []
    try:
        for _ in range(workers):  # holding every worker at once means none is busy any more
            cm = pool.acquire(header, Priority.BATCH, wait=120)
            held.append((cm, cm.__enter__()))
    finally:
        for cm, _ in reversed(held):
            cm.__exit__(None, None, None)


def run_config(name: str, cache_preamble: bool, args: argparse.Namespace, costs: dict[str, float]) -> dict:
    calls = []
    with sim_pool(max_repls=args.workers, warm_headers=HEADER) as pool:
        checker = TacticChecker(pool, budget=120, max_workers=args.workers, cache_preamble=cache_preamble)
        for i, (source, position) in enumerate(trace(args.theorems, args.calls)):
            ctx = goal_context_from_source(source, *position, heartbeats=200000)
            before = checker.totals()
            started = time.monotonic()
            report = checker.check(ctx, [Candidate(t, 0.0) for t in CANDIDATES])
            latency = time.monotonic() - started
            settle(pool, ctx.header, args.workers)  # count work that went on after the answer, too
            after = checker.totals()
            work = {k: after[k] - before[k] for k in after}
            calls.append({
                "call": i + 1, "latency_s": latency,
                "requests": work["preamble"] + work["declaration"] + work["tactic"],
                "preamble_elaborations": work["preamble"], "preamble_reused": work["reused"],
                "simulated_lean_s": simulated_seconds(work, costs, args.theorems),
                "verdicts": [c.status for c in report.candidates], "workers": report.workers,
            })
    return {
        "name": name,
        "cache_preamble": cache_preamble,
        "calls": calls,
        "total_requests": sum(c["requests"] for c in calls),
        "total_preamble_elaborations": sum(c["preamble_elaborations"] for c in calls),
        "total_simulated_lean_s": sum(c["simulated_lean_s"] for c in calls),
        "mean_latency_s": statistics.mean(c["latency_s"] for c in calls),
        "median_latency_s": statistics.median(c["latency_s"] for c in calls),
    }


def run(args: argparse.Namespace) -> dict:
    costs = {"import": 0.3 if args.quick else 2.0, "cmd": 0.01, "proof": args.proof_seconds, "tactic": 0.02}
    with scoped_environ(sim_costs(**costs)):
        leanstep_row = run_config("leanstep (preamble env cached per REPL)", True, args, costs)
        kimina_row = run_config("header-only cache (preamble re-elaborated)", False, args, costs)
    same = [a["verdicts"] for a in leanstep_row["calls"]] == [b["verdicts"] for b in kimina_row["calls"]]
    return {
        "benchmark": "editor",
        "quick": args.quick,
        "calls": args.calls,
        "preamble_theorems": args.theorems,
        "workers": args.workers,
        "candidates_per_call": list(CANDIDATES),
        "simulated_costs_s": {"import (before timing)": costs["import"], "per_command": costs["cmd"],
                              "per_proof": costs["proof"], "per_tactic": costs["tactic"]},
        "configs": [leanstep_row, kimina_row],
        "same_verdicts": same,
        "ratios": {
            "simulated_lean_s": kimina_row["total_simulated_lean_s"] / leanstep_row["total_simulated_lean_s"],
            "requests": kimina_row["total_requests"] / leanstep_row["total_requests"],
            "mean_latency": kimina_row["mean_latency_s"] / leanstep_row["mean_latency_s"],
        },
    }


def print_table(result: dict) -> None:
    c = result["simulated_costs_s"]
    print(f"{result['calls']} llmstep calls down one proof; preamble of {result['preamble_theorems']} theorems; "
          f"{len(result['candidates_per_call'])} candidates per call; {result['workers']} REPLs. Simulated costs: "
          f"{c['per_proof']:g} s per proof, {c['per_command']:g} s per command, {c['per_tactic']:g} s per tactic, "
          f"import {c['import (before timing)']:g} s (before timing).")
    print()
    print("| configuration | REPL requests | preamble elaborations | simulated Lean s | mean latency s "
          "| median latency s |")
    print("|---|---|---|---|---|---|")
    for row in result["configs"]:
        print(f"| {row['name']} | {row['total_requests']} | {row['total_preamble_elaborations']} | "
              f"{row['total_simulated_lean_s']:.2f} | {row['mean_latency_s']:.3f} | {row['median_latency_s']:.3f} |")
    r = result["ratios"]
    print(f"\nheader-only / leanstep: {r['simulated_lean_s']:.1f}x Lean work, {r['requests']:.2f}x requests, "
          f"{r['mean_latency']:.1f}x mean latency; same verdicts: {result['same_verdicts']}")


def plot(result: dict, path: Path) -> None:
    with png_figure(path, figsize=(7, 4)) as (_, ax):
        for row in result["configs"]:
            xs = [c["call"] for c in row["calls"]]
            ax.plot(xs, [c["latency_s"] for c in row["calls"]], marker="o", markersize=3, label=row["name"])
        ax.set_xlabel("llmstep call (cursor moving down the proof)")
        ax.set_ylabel("checking latency (s)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Editing session, preamble of {result['preamble_theorems']} theorems (simulated REPL)")
        ax.legend()


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("editor", argv, parse_args, run, print_table, plot)


if __name__ == "__main__":
    sys.exit(main())
