"""Batch verification throughput: leanstep against the Kimina server and LeanInteract.

One simulated workload (N snippets over H import headers, a fraction of exact
duplicates, per-proof costs with a long tail carried by ``-- sim: delay S``
directives, an import cost per header import) is run, on the same machine and with
the same number of REPL workers, through

* leanstep: ``leanstep serve --repl sim`` as a subprocess, Kimina-shaped ``POST /verify``;
* Kimina: ``kimina-ast-server`` (a fork of Kimina Lean Server v2) as a subprocess whose
  ``lake env <repl>`` runs the simulated REPL through a ``lake`` shim, same ``POST /verify``
  requests from the same client;
* LeanInteract: its ``LeanServerPool`` (a library, no HTTP) with a local "REPL checkout"
  whose binary is the simulated REPL; each header is run once as a command and every body
  runs on top of its header's env (the session cache replays the header on other workers).

The peers live in their own virtualenv (``benchmarks/.peers/venv``, created on first
run). Usage::

    python benchmarks/throughput.py [--quick] [--workers 1,2,4] [--systems leanstep,kimina,leaninteract]

Prints proofs/s per system and worker count and each peer's ratio to leanstep; writes
``benchmarks/results/throughput.json`` and ``throughput.png``.
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


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leanstep bench throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small workload, workers 1,2 (about a minute)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2,4; quick 1,2)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which of leanstep,kimina,leaninteract to run")
    p.add_argument("-n", type=int, default=None, help="snippets (default 300; quick 60)")
    p.add_argument("--headers", type=int, default=2, help="distinct import headers")
    p.add_argument("--duplicates", type=float, default=0.2, help="fraction of exact duplicates")
    p.add_argument("--import-s", type=float, default=None, help="simulated seconds per header import (default 1; quick 0.5)")
    p.add_argument("--proof-median", type=float, default=0.05, help="median simulated seconds per proof")
    p.add_argument("--proof-sigma", type=float, default=1.0, help="log-sd of the per-proof lognormal")
    p.add_argument("--proof-cap", type=float, default=2.0, help="cap on one proof's seconds")
    p.add_argument("--invalid", type=float, default=0.2, help="fraction of invalid proofs")
    p.add_argument("--batch-size", type=int, default=16, help="snippets per HTTP request")
    p.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sandbox", default=None,
                   help="leanstep's REPL sandbox (auto, bwrap, rlimit, none; default: leanstep's own default)")
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

def run_leanstep(snippets, workers: int, sim_env: dict[str, str], args) -> dict[str, Any]:
    from benchmarks import common

    extra = ["--sandbox", args.sandbox] if args.sandbox else []
    with common.LeanstepServer(workers, env=sim_env, extra_args=extra) as server:
        t0 = time.perf_counter()
        results = common.post_verify(server.url, snippets, args.batch_size, args.concurrency)
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


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = _parse(list(argv or []))
    if args.li_driver:
        return _leaninteract_driver(*args.li_driver)

    from benchmarks import common

    workers_list = [int(x) for x in (args.workers or ("1,2" if args.quick else "1,2,4")).split(",")]
    n = args.n or (60 if args.quick else 300)
    import_s = args.import_s if args.import_s is not None else (0.5 if args.quick else 1.0)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(f"unknown systems: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    cost = common.CostModel(import_s=import_s, proof_median_s=args.proof_median, proof_sigma=args.proof_sigma,
                            proof_cap_s=args.proof_cap, invalid_fraction=args.invalid)
    snippets = common.make_workload(n, args.headers, args.duplicates, cost, seed=args.seed)
    work = common.expected_seconds(snippets, cost)
    sim_env = common.sim_environ(import_s=import_s)
    n_dup = sum(1 for s in snippets if s.duplicate_of)
    model = {
        "snippets": n, "headers": args.headers, "duplicates": n_dup, "duplicate_fraction": args.duplicates,
        "cost_model": cost.describe(), "import_s": import_s, "proof_median_s": args.proof_median,
        "proof_sigma": args.proof_sigma, "proof_cap_s": args.proof_cap, "invalid_fraction": args.invalid,
        "simulated_proof_seconds_all": round(work["proof_seconds_all"], 3),
        "simulated_proof_seconds_unique": round(work["proof_seconds_unique"], 3),
        "batch_size": args.batch_size, "http_concurrency": args.concurrency,
    }
    print("Throughput benchmark (simulated REPL: python -m leanstep.sim)")
    print(f"  workload: {n} snippets, {args.headers} headers, {n_dup} exact duplicates "
          f"({args.duplicates:.0%} target), seed {args.seed}")
    print(f"  cost model: {cost.describe()}")
    print(f"  simulated proof seconds: {work['proof_seconds_all']:.1f} in all, "
          f"{work['proof_seconds_unique']:.1f} without duplicates")
    print(f"  HTTP clients: {args.batch_size} snippets per POST /verify, {args.concurrency} requests in flight")
    print(f"  workers: {workers_list}; machine: {os.cpu_count()} CPUs; leanstep sandbox: "
          f"{args.sandbox or 'default'}", flush=True)

    peer, missing = common.peers_for(systems, install=not args.no_install)

    runs: list[dict[str, Any]] = []
    for w in workers_list:
        for name in systems:
            if name in missing:
                continue
            print(f"  running {name} with {w} worker(s)...", flush=True)
            try:
                if name == "leanstep":
                    out = run_leanstep(snippets, w, sim_env, args)
                elif name == "kimina":
                    out = run_kimina(snippets, w, sim_env, args, peer)
                else:
                    out = run_leaninteract(snippets, w, sim_env, args, peer)
            except Exception as exc:  # a peer failing must not stop the others
                reason = f"{type(exc).__name__}: {exc}"
                print(f"    {name} failed: {reason[:1500]}")
                if name == "leanstep":
                    raise
                missing[name] = reason[:2000]
                continue
            results = out["results"]
            agree = sum(1 for s, r in zip(snippets, results) if common.has_error(r) == (not s.valid))
            failed = sum(1 for r in results if r.get("error"))
            runs.append({"system": name, "workers": w, "wall_s": round(out["wall_s"], 4),
                         "proofs_per_s": round(n / out["wall_s"], 3), "verdicts_as_expected": agree,
                         "server_errors": failed})
            print(f"    {n / out['wall_s']:.2f} proofs/s ({out['wall_s']:.2f} s), verdicts as expected {agree}/{n}",
                  flush=True)

    by = {(r["system"], r["workers"]): r for r in runs}
    rows = []
    for r in runs:
        base = by.get(("leanstep", r["workers"]))
        r["ratio_to_leanstep"] = round(r["proofs_per_s"] / base["proofs_per_s"], 3) if base else None
        ideal = work["proof_seconds_all"] / r["workers"]
        rows.append([r["system"], r["workers"], r["wall_s"], r["proofs_per_s"], r["ratio_to_leanstep"],
                     f"{r['verdicts_as_expected']}/{n}", round(ideal, 2)])
    print()
    common.print_table(rows, ["system", "workers", "wall s", "proofs/s", "x leanstep", "verdicts ok",
                              "no-cache bound s"])
    print("  (no-cache bound: all simulated proof seconds / workers, imports excluded; a result cache can beat it)")
    for name, reason in missing.items():
        print(f"  {name}: not measured: {reason[:600]}")
    ratios = {f"{r['system']}@{r['workers']}": r["ratio_to_leanstep"] for r in runs
              if r["system"] != "leanstep" and r["ratio_to_leanstep"] is not None}
    if ratios:
        print("  peer / leanstep proofs/s: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))

    data = {"workload": model, "workers": workers_list, "runs": runs, "missing": missing,
            "peers": peer.versions if peer and peer.ok else {},
            "notes": ["Kimina: kimina-ast-server run with ENVIRONMENT=prod, LOG_LEVEL=WARNING, its Prisma "
                      "client stubbed (database off), `lake env` through a shim that runs the simulated REPL.",
                      "LeanInteract: LeanServerPool in-process (no HTTP); headers run once as commands, bodies "
                      "with env=<header env>; no result cache, so duplicates are checked again.",
                      "leanstep: `leanstep serve --repl sim --no-model`"
                      + (f" --sandbox {args.sandbox}" if args.sandbox else "") + ", default settings otherwise."]}
    path = common.write_results("throughput", data, args.json)
    series: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        series.setdefault(r["system"], []).append((r["workers"], r["proofs_per_s"]))
    png = common.plot("throughput", series, "REPL workers", "proofs / s",
                      f"{n} snippets, {args.headers} headers, {args.duplicates:.0%} dup, import {import_s:g} s, "
                      f"proof lognormal median {args.proof_median:g} s", args.png)
    print(f"  wrote {path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
