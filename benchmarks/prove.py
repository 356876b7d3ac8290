"""Proving: best-first search's time to proof and expansions per second, sequential against parallel
checking, and what "first valid wins" saves on a pass@8 evaluation.

Everything runs the server's own code (``build_services``: pool, verifier, proof sessions, prover) on the
simulated REPL, with the scripted backend as the model: its proposals are written here, so the search tree
and the samples are the same on every run and only the checking varies.

* Search. The statement is a chain of implications, ``1 = 1 → 2 = 2 → ... → 1 = 2 ∨ 0 = 0``: at each level
  the best-scored proposal is ``exfalso`` (a dead end: nothing proves ``False`` there, four tactics try),
  the next is ``intro hK``, and two more proposals change nothing; at the bottom ``left`` is a dead end and
  ``right`` then ``rfl`` finish. Each tactic costs ``--tactic-seconds`` in the simulator. The same search runs
  with 1 REPL (every candidate checked after the other) and with ``--repls`` REPLs (the candidates of an
  expansion at once), each with 1 and 2 states expanded at once.
* pass@8. ``--problems`` statements, 8 sampled proofs each, every proof check costing ``--proof-seconds``;
  about a third of the problems have no valid sample, the others one to three at random places. The
  evaluation runs twice, as ``leanstep eval`` runs it (its default ``--parallel``): every sample checked,
  then first valid wins; pass@k, the checks run and the REPL seconds spent are compared.

    python benchmarks/prove.py            # the figures in benchmarks/README.md
    python benchmarks/prove.py --quick    # small and fast (a smoke test)

Writes JSON (``--json``, default benchmarks/results/prove.json) and a PNG (``--png``): pass@k of both
evaluation modes and the search's expansions per second.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
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
    sim_config,
    sim_costs,
    warm_services,
)
from leanstep.api.records import json_line  # noqa: E402
from leanstep.plotting import png_figure  # noqa: E402
from leanstep.prove.evaluate import Evaluation, Problem, default_parallel  # noqa: E402
from leanstep.prove.prover import ProveRequest  # noqa: E402

HEADER = "import Mathlib"
SAMPLES = 8


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short chain, few problems, one run (a smoke test)")
    p.add_argument("--runs", type=int, default=None, help="runs of each search (median reported)")
    p.add_argument("--repls", type=int, default=4, help="REPLs of the parallel runs")
    p.add_argument("--levels", type=int, default=None, help="implications in the searched statement")
    p.add_argument("--tactic-seconds", type=float, default=None, help="simulated cost of one tactic")
    p.add_argument("--problems", type=int, default=None, help="problems of the pass@8 evaluation")
    p.add_argument("--proof-seconds", type=float, default=None, help="simulated cost of checking one proof")
    add_output_arguments(p, "prove")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.levels = args.levels or (3 if args.quick else 6)
    args.tactic_seconds = args.tactic_seconds if args.tactic_seconds is not None else (0.02 if args.quick else 0.05)
    args.problems = args.problems or (6 if args.quick else 24)
    args.proof_seconds = args.proof_seconds if args.proof_seconds is not None else (0.05 if args.quick else 0.2)
    return args


# --------------------------------------------------------------------------- the workloads


def maze(levels: int) -> tuple[str, list[dict[str, Any]], int]:
    """The searched statement, the proposals for each of its states, and the length of its proof."""
    premises = [f"{k} = {k}" for k in range(1, levels + 1)]
    target = "1 = 2 ∨ 0 = 0"
    statement = "theorem maze : " + " → ".join([*premises, target])
    entries: list[dict[str, Any]] = [{"goal": "⊢ False", "tactics": ["trivial", "decide", "contradiction",
                                                                     "assumption"]},
                                     {"goal": "⊢ 1 = 2", "tactics": ["decide", "norm_num", "omega", "rfl"]},
                                     {"goal": "⊢ 0 = 0", "tactics": ["rfl"]},
                                     {"goal": f"⊢ {target}", "tactics": [{"text": "left", "score": -0.1},
                                                                       {"text": "right", "score": -0.2}]}]
    for level in range(levels):
        goal = "⊢ " + " → ".join([*premises[level:], target])
        entries.append({"goal": goal, "tactics": [
            {"text": "exfalso", "score": -0.1}, {"text": f"intro h{level + 1}", "score": -0.2},
            {"text": f"simp only [h{level}]", "score": -0.5}, {"text": "skip", "score": -0.6}]})
    return statement, entries, levels + 2


def pass8_problems(count: int, seed: int = 0) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Problems and 8 sampled proofs of each: none valid for a third of them, else one to three valid."""
    rng = random.Random(seed)
    problems, entries = [], []
    for k in range(count):
        name = f"p{k}"
        statement = f"theorem {name} (x : ℕ) (h : {k} < x) : {k} < x + 1"
        valid = 0 if k % 3 == 0 else rng.randint(1, 3)
        good = set(rng.sample(range(SAMPLES), valid))
        proofs = [f"{statement} := by\n  {'omega' if i in good else f'exact wrong_{i}'} -- sample {i}"
                  for i in range(SAMPLES)]
        problems.append(Problem(name, HEADER, statement))
        entries.append({"theorem": name, "proofs": proofs})
    return problems, entries


def write_script(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json_line(e) for e in entries), encoding="utf-8")
    return path


def services_for(script: Path, repls: int, width: int, **settings: Any):
    """The server's services with the scripted backend, their pool warm; closed after the block."""
    return warm_services(sim_config(max_repls=repls, queue_wait=60, backend="scripted", script=str(script),
                                    search_width=width, check_timeout=30, **settings))


# --------------------------------------------------------------------------- measurements


def search_runs(args: argparse.Namespace, script: Path, statement: str) -> list[dict[str, Any]]:
    rows = []
    for repls, width in ((1, 1), (args.repls, 1), (args.repls, 2)):
        results, seconds = [], []
        with services_for(script, repls, width) as services:
            for _ in range(args.runs):
                started = time.perf_counter()
                result = services.prover.prove(ProveRequest(strategy="search", header=HEADER, statement=statement))
                seconds.append(time.perf_counter() - started)
                results.append(result)
        middle = sorted(range(len(seconds)), key=seconds.__getitem__)[len(seconds) // 2]
        result, median = results[middle], seconds[middle]  # the median run, its own figures
        rows.append({"repls": repls, "width": width, "proved": all(r.proved for r in results),
                     "expansions": result.expansions, "time_to_proof_s": median,
                     "expansions_per_s": result.expansions / median,
                     "generation_ms": result.timings.generation_ms, "checking_ms": result.timings.checking_ms,
                     "same_proof": len({r.proof for r in results}) == 1})
    return rows


def pass8_runs(args: argparse.Namespace, script: Path, problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, check_all in (("check_all", True), ("first_valid", False)):
        # a fresh server each time, so no result is answered from the other run's cache
        with services_for(script, args.repls, 1, cache_size=0) as services:
            evaluation = Evaluation(services.prover, "whole", k=SAMPLES, check_all=check_all,
                                    parallel=default_parallel("whole", args.repls))
            started = time.perf_counter()
            _, summary = evaluation.run(problems)
            wall = time.perf_counter() - started
        out[mode] = {"pass_at": summary.pass_at, "solved": summary.solved, "checked": summary.attempts_checked,
                     "skipped": summary.attempts_skipped, "repl_seconds": summary.checking.repl, "wall_s": wall}
    every, first = out["check_all"], out["first_valid"]
    out["saving"] = {"checks": 1 - first["checked"] / every["checked"],
                     "repl_seconds": 1 - first["repl_seconds"] / every["repl_seconds"],
                     "wall": 1 - first["wall_s"] / every["wall_s"]}
    return out


def plot(result: dict[str, Any], png: Path) -> None:
    with png_figure(png, nrows=1, ncols=2, figsize=(10, 4)) as (_, (left, right)):
        for mode, label in (("check_all", "every sample checked (Chen et al.)"), ("first_valid", "first valid wins")):
            curve = result["pass8"][mode]["pass_at"]
            ks = sorted(int(k) for k in curve)
            left.plot(ks, [curve[k] for k in ks], marker="o", label=label)
        left.set_xlabel("k")
        left.set_ylabel("pass@k")
        left.set_ylim(0, 1.02)
        left.set_title(f"pass@k, {result['problems']} problems, 8 samples each", fontsize=10)
        left.grid(alpha=0.3)
        left.legend(fontsize=8)
        rows = result["search"]
        labels = [f"{r['repls']} REPL{'s' if r['repls'] > 1 else ''}, width {r['width']}" for r in rows]
        right.bar(labels, [r["expansions_per_s"] for r in rows], color=["#999", "#4a7", "#27a"])
        right.set_ylabel("expansions per second")
        right.set_title(f"best-first search, {rows[0]['expansions']} expansions to the proof", fontsize=10)
        right.tick_params(axis="x", labelsize=8)


def run(args: argparse.Namespace) -> dict[str, Any]:
    statement, entries, depth = maze(args.levels)
    problems, proofs = pass8_problems(args.problems)
    with tempfile.TemporaryDirectory() as tmp:
        script = write_script(Path(tmp) / "proposals.jsonl", entries + proofs)
        with scoped_environ(sim_costs(tactic=args.tactic_seconds, proof=args.proof_seconds, import_=0, cmd=0)):
            search = search_runs(args, script, statement)
            pass8 = pass8_runs(args, script, problems)
    return {"search": search, "proof_length": depth, "levels": args.levels, "pass8": pass8,
            "problems": args.problems, "repls": args.repls, "runs": args.runs,
            "simulated_costs_s": {"per_tactic": args.tactic_seconds, "per_proof": args.proof_seconds}}


def report(result: dict[str, Any]) -> None:
    costs = result["simulated_costs_s"]
    print(f"\nBest-first search: {result['levels']} levels, a {result['proof_length']}-tactic proof behind dead "
          f"ends; {costs['per_tactic']:g} s per tactic; median of {result['runs']} run(s)")
    print_table([[r["repls"], r["width"], r["proved"], r["expansions"], r["time_to_proof_s"], r["expansions_per_s"],
                  r["generation_ms"], r["checking_ms"]] for r in result["search"]],
                ["REPLs", "width", "proved", "expansions", "time to proof s", "expansions/s", "generation ms",
                 "checking ms"])
    print("  (generation and checking are summed over the states expanded at once)")
    base = result["search"][0]["time_to_proof_s"]
    for row in result["search"][1:]:
        print(f"  {row['repls']} REPLs, width {row['width']}: {base / row['time_to_proof_s']:.1f}x faster "
              "to the proof than 1 REPL")
    p = result["pass8"]
    print(f"\npass@8 evaluation: {result['problems']} problems x 8 samples, {costs['per_proof']:g} s per proof "
          f"check, {result['repls']} REPLs")
    print_table([[mode, p[mode]["pass_at"][1], p[mode]["pass_at"][8], p[mode]["solved"], p[mode]["checked"],
                  p[mode]["skipped"], p[mode]["repl_seconds"], p[mode]["wall_s"]]
                 for mode in ("check_all", "first_valid")],
                ["mode", "pass@1", "pass@8", "solved", "checks", "skipped", "REPL s", "wall s"])
    s = p["saving"]
    print(f"  first valid wins saves {s['checks']:.0%} of the checks, {s['repl_seconds']:.0%} of the REPL "
          f"seconds and {s['wall']:.0%} of the wall time; pass@8 is the same "
          f"({p['check_all']['pass_at'][8]:.3f} = {p['first_valid']['pass_at'][8]:.3f})")


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("prove", argv, parse_args, run, report, plot)


if __name__ == "__main__":
    sys.exit(main())
