"""Batch verification throughput: leanstep against the Kimina server and LeanInteract, per workload.

Named workloads (``benchmarks/workloads.py`` says how each is made and why):
one header with no duplicates (Lean-bound), RL sampling with K = 8 and 32
samples per problem (every sample checked), pass@K with first valid wins, and
a header mix. Each runs on the same machine with the same number of REPL
workers through

* leanstep: ``leanstep serve --repl sim`` as a subprocess, Kimina-shaped ``POST /verify``;
* Kimina: ``kimina-ast-server`` (a fork of Kimina Lean Server v2) as a subprocess whose
  ``lake env <repl>`` runs the simulated REPL through a ``lake`` shim, same ``POST /verify``
  requests from the same client;
* LeanInteract: its ``LeanServerPool`` (a library, no HTTP) with a local "REPL checkout"
  whose binary is the simulated REPL; each header is run once as a command and every body
  runs on top of its header's env (the session cache replays the header on other workers).

Every cell gives proofs/s and the efficiency against the ideal (every proof's simulated
seconds plus the imports no checker can avoid, over the workers; above 1: work avoided).
The peers live in their own virtualenv (``benchmarks/.peers/venv``, created on first
run). Usage::

    python benchmarks/throughput.py [--quick] [--workloads lean,rl8,...] [--workers 1,2,4] [--systems ...]

Writes ``benchmarks/results/throughput.json`` and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEMS = ("leanstep", "kimina", "leaninteract")
LABELS = {"leanstep": "leanstep", "kimina": "Kimina", "leaninteract": "LeanInteract"}
DEFAULT_WORKLOADS = "lean,rl8,rl32,pass8,pass32,mix"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leanstep bench throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small workloads, workers 1,2 (a few minutes)")
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS,
                   help=f"comma-separated, of {DEFAULT_WORKLOADS},custom (custom: --headers, --duplicates)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2,4; quick 1,2)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which of leanstep,kimina,leaninteract to run")
    p.add_argument("-n", type=int, default=None, help="snippets per workload (default 240; quick 48)")
    p.add_argument("--theta", type=float, default=8.0,
                   help="how diverse a problem's samples are (Chinese restaurant process; default 8)")
    p.add_argument("--headers", type=int, default=2, help="distinct import headers (custom workload)")
    p.add_argument("--duplicates", type=float, default=0.2, help="fraction of exact duplicates (custom workload)")
    p.add_argument("--import-s", type=float, default=None, help="simulated seconds per header import (default 1; quick 0.5)")
    p.add_argument("--proof-median", type=float, default=None, help="median simulated seconds per proof (default 0.1; quick 0.05)")
    p.add_argument("--proof-sigma", type=float, default=1.0, help="log-sd of the per-proof lognormal")
    p.add_argument("--proof-cap", type=float, default=2.0, help="cap on one proof's seconds")
    p.add_argument("--invalid", type=float, default=0.2, help="fraction of invalid proofs (non-RL workloads)")
    p.add_argument("--batch-size", type=int, default=16, help="snippets per HTTP request")
    p.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sandbox", default=None,
                   help="leanstep's REPL sandbox (auto, bwrap, rlimit, none; default: leanstep's own default)")
    p.add_argument("--trace", default=None,
                   help="leanstep's servers append a trace here (`leanstep serve --trace`), for `leanstep plan`")
    p.add_argument("--no-install", action="store_true", help="do not create the peer virtualenv if missing")
    p.add_argument("--json", default=None, help="results file (default benchmarks/results/throughput.json)")
    p.add_argument("--png", default=None, help="plot file (default benchmarks/results/throughput.png)")
    p.add_argument("--li-driver", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- LeanInteract driver
# Runs inside the peers' virtualenv (``python throughput.py --li-driver SPEC OUT``); stdlib and
# lean_interact only.

def _leaninteract_driver(spec_path: str, out_path: str) -> int:
    from lean_interact import Command, LeanREPLConfig
    from lean_interact.pool import LeanServerPool

    spec = json.loads(Path(spec_path).read_text())
    config = LeanREPLConfig(local_repl_path=spec["repl_checkout"], build_repl=False, lake_path=spec["lake"])
    snippets = spec["snippets"]
    headers = sorted({s["header"] for s in snippets})
    t0, c0 = time.perf_counter(), time.process_time()
    pool = LeanServerPool(config, num_workers=spec["workers"])
    try:
        header_responses = pool.run_batch([Command(cmd=h) for h in headers], timeout_per_cmd=spec["timeout"])
        env_of = {h: getattr(r, "env", None) for h, r in zip(headers, header_responses)}
        requests = [Command(cmd=s["body"], env=env_of[s["header"]]) for s in snippets]
        responses = pool.run_batch(requests, timeout_per_cmd=spec["timeout"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        pool.close()
    results = []
    for s, r in zip(snippets, responses):
        if isinstance(r, Exception):
            results.append({"custom_id": s["id"], "error": f"{type(r).__name__}: {r}"})
        elif hasattr(r, "messages"):
            msgs = [{"severity": m.severity, "data": m.data} for m in r.messages]
            results.append({"custom_id": s["id"], "response": {"env": r.env, "messages": msgs}})
        else:  # LeanError
            results.append({"custom_id": s["id"], "response": {"message": getattr(r, "message", str(r))}})
    Path(out_path).write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, "results": results}))
    return 0


# --------------------------------------------------------------------------- runners

def run_leanstep(snippets, workers: int, sim_env: dict[str, str], args, first_valid: bool = False) -> dict[str, Any]:
    from benchmarks import common

    extra = [*(["--sandbox", args.sandbox] if args.sandbox else []), *(["--trace", args.trace] if args.trace else [])]
    with common.LeanstepServer(workers, env=sim_env, extra_args=extra) as server:
        t0 = time.perf_counter()
        results = common.post_verify(server.url, snippets, args.batch_size, args.concurrency, first_valid=first_valid)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "results": results}


def run_kimina(snippets, workers: int, sim_env: dict[str, str], args, peer) -> dict[str, Any]:
    from benchmarks import common

    with common.KiminaServer(peer, workers, env=sim_env) as server:
        t0 = time.perf_counter()
        results = common.post_verify(server.url, snippets, args.batch_size, args.concurrency)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "results": results}


def run_leaninteract(snippets, workers: int, sim_env: dict[str, str], args, peer) -> dict[str, Any]:
    from benchmarks import common

    shims = common.SimShims()
    try:
        spec = {"repl_checkout": str(shims.repl_checkout), "lake": str(shims.lake), "workers": workers,
                "timeout": 120.0,
                "snippets": [{"id": s.id, "header": s.header, "body": s.body} for s in snippets]}
        spec_path = shims.dir / "spec.json"
        out_path = shims.dir / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, **sim_env, "PATH": shims.path_env()}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([str(peer.python), str(Path(__file__).resolve()), "--li-driver", str(spec_path),
                               str(out_path)], env=env, cwd=str(shims.project), capture_output=True, text=True,
                              timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"LeanInteract driver failed (status {proc.returncode}): {proc.stderr[-1500:]}")
        return json.loads(out_path.read_text())
    finally:
        shims.cleanup()


def judge(workload, results: list[dict[str, Any]]) -> dict[str, int]:
    """How many answers are right (a skipped sample is right when its problem was solved), how many snippets
    a REPL checked (neither skipped nor answered by a cache or an identical snippet), and how many problems got
    the right pass@K answer."""
    from benchmarks import common

    answered = [r.get("verdict") != "skipped" for r in results]
    valid = [ok and not common.has_error(r) for ok, r in zip(answered, results)]
    solved: dict[str, bool] = {}
    for s, v in zip(workload.snippets, valid):
        if s.group is not None:
            solved[s.group] = solved.get(s.group, False) or v
    right = sum(1 for s, a, v in zip(workload.snippets, answered, valid)
                if (v == s.valid if a else solved.get(s.group or "", False)))
    expected = workload.solved()
    checked = sum(1 for a, r in zip(answered, results) if a and not r.get("cached"))
    return {"right": right, "checked": checked,
            "problems_right": sum(1 for g, ok in expected.items() if solved.get(g, False) == ok)}


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = _parse(list(argv or []))
    if args.li_driver:
        return _leaninteract_driver(*args.li_driver)

    from benchmarks import common, workloads

    workers_list = [int(x) for x in (args.workers or ("1,2" if args.quick else "1,2,4")).split(",")]
    n = args.n or (48 if args.quick else 240)
    import_s = args.import_s if args.import_s is not None else (0.5 if args.quick else 1.0)
    median = args.proof_median if args.proof_median is not None else (0.05 if args.quick else 0.1)
    try:
        systems = common.chosen_systems(args.systems, SYSTEMS)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    cost = common.CostModel(import_s=import_s, proof_median_s=median, proof_sigma=args.proof_sigma,
                            proof_cap_s=args.proof_cap, invalid_fraction=args.invalid)
    try:
        loads = workloads.build([w.strip() for w in args.workloads.split(",") if w.strip()], n, cost,
                                theta=args.theta, seed=args.seed, headers=args.headers, duplicates=args.duplicates)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sim_env = common.sim_environ(import_s=import_s)
    print("Throughput benchmark (simulated REPL: python -m leanstep.sim)")
    print(f"  cost model: {cost.describe()}")
    print(f"  HTTP clients: {args.batch_size} snippets per POST /verify (pass@K: whole problems), "
          f"{args.concurrency} requests in flight")
    print(f"  workers: {workers_list}; machine: {os.cpu_count()} CPUs; leanstep sandbox: "
          f"{args.sandbox or 'default'}", flush=True)
    for w in loads:
        print(f"  {w.name}: {w.title}: {len(w.snippets)} snippets, {w.headers} header(s), {w.duplicates} duplicates, "
              f"{w.proof_seconds:.1f} simulated proof-seconds")

    peer, missing = common.peers_for(systems, install=not args.no_install)

    runs: list[dict[str, Any]] = []
    for w in loads:
        for workers in workers_list:
            for name in systems:
                if name in missing:
                    continue
                print(f"  {w.name}: {name} with {workers} worker(s)...", flush=True)
                runners = {"leanstep": lambda: run_leanstep(w.snippets, workers, sim_env, args,
                                                            first_valid=w.first_valid),
                           "kimina": lambda: run_kimina(w.snippets, workers, sim_env, args, peer),
                           "leaninteract": lambda: run_leaninteract(w.snippets, workers, sim_env, args, peer)}
                out = common.run_system(name, runners[name], missing, ours=name == "leanstep")
                if out is None:
                    continue
                ideal = w.ideal_s(workers, import_s)
                verdicts = judge(w, out["results"])
                run = {"workload": w.name, "system": name, "workers": workers, "wall_s": round(out["wall_s"], 4),
                       "proofs_per_s": round(len(w.snippets) / out["wall_s"], 3), "ideal_s": round(ideal, 4),
                       "efficiency": round(ideal / out["wall_s"], 4), "snippets": len(w.snippets), **verdicts}
                runs.append(run)
                print(f"    {run['proofs_per_s']:.2f} proofs/s ({out['wall_s']:.2f} s), efficiency "
                      f"{run['efficiency']:.3f}, answers right {verdicts['right']}/{len(w.snippets)}, checked "
                      f"{verdicts['checked']}", flush=True)

    print()
    print_workload_table(loads, runs, systems, missing, import_s)
    data = {"workloads": [{"name": w.name, "title": w.title, "snippets": len(w.snippets), "headers": w.headers,
                           "duplicates": w.duplicates, "proof_seconds": round(w.proof_seconds, 3),
                           "first_valid": w.first_valid, "problems": len(w.solved()) or None} for w in loads],
            "cost_model": cost.describe(), "import_s": import_s, "theta": args.theta, "workers": workers_list,
            "http": {"batch_size": args.batch_size, "concurrency": args.concurrency}, "runs": runs,
            "missing": missing, "peers": peer.versions if peer and peer.ok else {},
            "notes": ["Kimina: kimina-ast-server run with ENVIRONMENT=prod, LOG_LEVEL=WARNING, its Prisma "
                      "client stubbed (database off), `lake env` through a shim that runs the simulated REPL.",
                      "LeanInteract: LeanServerPool in-process (no HTTP); headers run once as commands, bodies "
                      "with env=<header env>; no result cache, so duplicates are checked again.",
                      "leanstep: `leanstep serve --repl sim --no-model`"
                      + (f" --sandbox {args.sandbox}" if args.sandbox else "") + ", default settings otherwise; "
                      "pass@K requests ask for first_valid with each problem's samples in one request."]}
    path = common.write_results("throughput", data, args.json)
    png = plot_efficiency(loads, runs, systems, args.png)
    print(f"  wrote {path}" + (f" and {png}" if png else ""))
    return 0


def print_workload_table(loads, runs: list[dict[str, Any]], systems: list[str], missing: dict[str, str],
                         import_s: float) -> None:
    """One row per workload and worker count: each system's wall time and efficiency, and leanstep's lead."""
    from benchmarks import common

    by = {(r["workload"], r["system"], r["workers"]): r for r in runs}
    shown = [s for s in systems if s not in missing]
    rows = []
    for w in loads:
        for workers in sorted({r["workers"] for r in runs if r["workload"] == w.name}):
            cells = [w.name, workers, round(w.ideal_s(workers, import_s), 2)]
            for name in shown:
                r = by.get((w.name, name, workers))
                cells.append(f"{r['proofs_per_s']:.2f}/s {r['efficiency']:.2f}" if r else "-")
            mine = by.get((w.name, "leanstep", workers))
            peers = [by[(w.name, p, workers)]["proofs_per_s"] for p in shown
                     if p != "leanstep" and (w.name, p, workers) in by]
            cells.append(f"{mine['proofs_per_s'] / max(peers):.2f}x" if mine and peers else "-")
            cells.append(f"{mine['checked']}/{mine['snippets']}" if mine else "-")
            rows.append(cells)
    common.print_table(rows, ["workload", "workers", "ideal s", *(f"{LABELS[s]} proofs/s eff" for s in shown),
                              "leanstep / best peer", "leanstep REPL checks"])
    print("  eff = ideal / measured wall time; ideal = (simulated proof seconds of every snippet + max(headers, "
          "workers) x import) / workers; above 1 means work was avoided (result cache, first valid wins)")
    for w in loads:
        print(f"  {w.name}: {w.title}")
    for name, reason in missing.items():
        print(f"  {name}: not measured: {reason[:600]}")


def plot_efficiency(loads, runs: list[dict[str, Any]], systems: list[str], path: str | None) -> Path | None:
    """Efficiency against workers, one panel per workload, one line per system (PNG)."""
    from benchmarks import common
    from leanstep.plotting import png_figure

    out = Path(path) if path else common.RESULTS_DIR / "throughput.png"
    columns = min(3, len(loads))
    rows = -(-len(loads) // columns)
    try:
        with png_figure(out, dpi=110, nrows=rows, ncols=columns, figsize=(4.2 * columns, 3.4 * rows),
                        squeeze=False) as (_, axes):
            for ax, w in zip(axes.flat, loads):
                for name in systems:
                    points = sorted((r["workers"], r["efficiency"]) for r in runs
                                    if r["workload"] == w.name and r["system"] == name)
                    if points:
                        xs, ys = zip(*points)
                        ax.plot(xs, ys, marker="o", label=LABELS[name])
                ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
                ax.set_title(f"{w.name}: {w.title}", fontsize=8)
                ax.set_xlabel("REPL workers")
                ax.set_ylabel("efficiency (ideal / measured)")
                ax.set_xticks(sorted({r["workers"] for r in runs}))
                ax.set_ylim(bottom=0)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            for ax in list(axes.flat)[len(loads):]:
                ax.axis("off")
    except ImportError:
        print("[throughput] no plot: matplotlib is not installed")
        return None
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
