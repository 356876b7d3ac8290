"""Orchestration overhead: what the checker itself costs per proof when Lean costs nothing.

The simulated REPL runs with every cost knob at zero, so each proof's wall time is
the pipe round trip, the simulator's own parsing, and the orchestrator. 10,000
distinct snippets (``--quick``: 2,000) on one header are checked by

* ``raw REPL``: one ``leanstep.repl.process.ReplProcess`` sending bodies back to back
  (the floor: simulator + pipe, no orchestration);
* ``leanstep in-process``: ``leanstep.check.verify.verify_batch`` on a pool from
  ``leanstep.repl.launch.make_pool``;
* ``leanstep HTTP``: ``leanstep serve --repl sim`` as a subprocess, ``POST /verify``;
* ``kimina HTTP``: kimina-ast-server on the simulated REPL (peer virtualenv);
* ``leaninteract``: LeanInteract's ``LeanServerPool`` (peer virtualenv).

Reported per system: proofs/s, wall ms per proof, orchestration ms per proof (wall per
proof minus the raw REPL's, at one worker), and the orchestrator's own CPU ms per proof
(its process only, REPLs and client excluded) with the implied most proofs/s one core
can push (1 / CPU per proof). A short cProfile of leanstep's in-process path follows.

Trust levels: what each level costs per proof, on the same snippets (each with the
statement it proves): the text-only checks alone (the source policy's scan and the
statement's text check, ``leanstep.check.verify.screen``: CPU ms per proof, no REPL),
then whole in-process runs at ``lenient``, ``strict`` (+ the axiom audit's REPL
command) and ``strict`` with a statement (+ the reference and the comparison).

    python benchmarks/overhead.py [--quick] [--workers 1,2] [--systems ...] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SYSTEMS = ("raw", "leanstep", "leanstep-http", "kimina", "leaninteract")
HEADER = "import Mathlib"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leanstep bench overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 snippets, one worker")
    p.add_argument("-n", type=int, default=None, help="snippets (default 10000; quick 2000)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2; quick 1)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}")
    p.add_argument("--batch-size", type=int, default=100, help="snippets per HTTP request")
    p.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight")
    p.add_argument("--profile-n", type=int, default=None, help="snippets in the cProfile run (default n/5)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-levels", action="store_true", help="skip the per-trust-level costs")
    p.add_argument("--trust", default="strict", choices=["lenient", "strict"],
                   help="leanstep's trust level in the in-process, HTTP and profile runs (default strict, the "
                        "server's default; the peers check no more than lenient does)")
    p.add_argument("--sandbox", default=None,
                   help="leanstep's REPL sandbox (auto, bwrap, rlimit, none; default: leanstep's own default)")
    p.add_argument("--no-install", action="store_true", help="do not create the peer virtualenv if missing")
    p.add_argument("--json", default=None, help="results file (default benchmarks/results/overhead.json)")
    p.add_argument("--png", default=None, help="plot file (default benchmarks/results/overhead.png)")
    return p.parse_args(argv)


def make_snippets(n: int):
    """``n`` distinct, valid, zero-cost snippets on one header (no duplicates: no cache hits)."""
    from benchmarks.common import Snippet

    out = []
    for i in range(n):
        body = f"theorem overhead_{i} (n : ℕ) (h : n = {i}) : {i} + 1 = {i + 1} := by\n  norm_num"
        out.append(Snippet(f"o{i}", f"{HEADER}\n\n{body}", HEADER, body, 0.0, True))
    return out


def _zero_cost_env() -> dict[str, str]:
    from benchmarks.common import sim_environ

    return sim_environ(0.0, 0.0, 0.0)


SANDBOX: str | None = None  # leanstep's sandbox mode for this run (None: its default)
TRUST = "strict"  # leanstep's trust level in the in-process, HTTP and profile runs


def _make_pool(workers: int):
    from leanstep.config import load
    from leanstep.repl.launch import make_pool

    settings = {"repl": "sim", "max_repls": workers}
    if SANDBOX:
        settings["sandbox"] = SANDBOX
    return make_pool(load(settings, environ={}))


# --------------------------------------------------------------------------- runners: each returns
# {"wall_s", "cpu_s" (orchestrator process), "errors"}

def run_raw(snippets, workers: int) -> dict[str, Any]:
    """One REPL per worker thread, bodies sent back to back on the header env: the floor."""
    from leanstep.repl.process import ReplProcess
    from leanstep.repl.protocol import CommandRequest, CommandResponse

    argv = [sys.executable, "-m", "leanstep.sim"]
    procs = [ReplProcess(argv).start() for _ in range(workers)]
    errors = [0]
    try:
        for p in procs:
            p.send(CommandRequest(cmd=HEADER), timeout=60)
        shards = [snippets[k::workers] for k in range(workers)]

        def drive(proc, shard) -> None:
            for s in shard:
                r = proc.send(CommandRequest(cmd=s.body, env=0), timeout=60)
                if not isinstance(r, CommandResponse) or any(m.is_error for m in r.messages):
                    errors[0] += 1

        t0, c0 = time.perf_counter(), time.process_time()
        threads = [threading.Thread(target=drive, args=(p, sh)) for p, sh in zip(procs, shards)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "errors": errors[0],
                "note": "header import and process start excluded"}
    finally:
        for p in procs:
            p.close()


def statement_of(snippet) -> str:
    """The statement a benchmark snippet proves: its theorem's head."""
    return snippet.body.split(" := ", 1)[0]


def run_leanstep(snippets, workers: int, trust: str = "lenient", statements: bool = False) -> dict[str, Any]:
    from leanstep.check.verdict import Trust
    from leanstep.check.verify import Snippet, verify_batch

    pool = _make_pool(workers)
    pool.start()
    try:
        batch = [Snippet(s.id, s.code, statement_of(s) if statements else None) for s in snippets]
        t0, c0 = time.perf_counter(), time.process_time()
        results = verify_batch(pool, batch, trust=Trust(trust))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        pool.shutdown()
    return {"wall_s": wall, "cpu_s": cpu, "errors": sum(1 for r in results if not r.ok)}


def run_http(server, snippets, args) -> dict[str, Any]:
    from benchmarks import common

    c0 = common.cpu_seconds(server.proc.pid)
    t0 = time.perf_counter()
    results = common.post_verify(server.url, snippets, args.batch_size, args.concurrency)
    wall = time.perf_counter() - t0
    cpu = common.cpu_seconds(server.proc.pid) - c0
    return {"wall_s": wall, "cpu_s": cpu, "errors": sum(1 for r in results if common.has_error(r))}


def run_leanstep_http(snippets, workers: int, args) -> dict[str, Any]:
    from benchmarks import common

    extra = ["--trust", TRUST, *(["--sandbox", SANDBOX] if SANDBOX else [])]
    with common.LeanstepServer(workers, env=_zero_cost_env(), extra_args=extra) as server:
        return run_http(server, snippets, args)


def run_kimina(snippets, workers: int, args, peer) -> dict[str, Any]:
    from benchmarks import common

    with common.KiminaServer(peer, workers, env=_zero_cost_env()) as server:
        return run_http(server, snippets, args)


def run_leaninteract(snippets, workers: int, peer) -> dict[str, Any]:
    from benchmarks import common
    from benchmarks.throughput import run_leaninteract as li

    out = li(snippets, workers, _zero_cost_env(), None, peer)
    return {"wall_s": out["wall_s"], "cpu_s": out["cpu_s"],
            "errors": sum(1 for r in out["results"] if common.has_error(r)),
            "note": "includes starting the pool and one header import per worker"}


# --------------------------------------------------------------------------- profile

def profile_leanstep(snippets, top: int = 20) -> tuple[str, list[dict[str, Any]]]:
    """cProfile of verify_batch with every thread it starts profiled; merged stats text and top rows."""
    from leanstep.check.verdict import Trust
    from leanstep.check.verify import verify_batch

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()
            profiles.append(prof)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_prof = cProfile.Profile()
    try:
        pool = _make_pool(1)
        pool.start()
        try:
            main_prof.enable()
            verify_batch(pool, [(s.id, s.code) for s in snippets], trust=Trust(TRUST))
            main_prof.disable()
        finally:
            pool.shutdown()
    finally:
        threading.Thread.run = original_run  # type: ignore[method-assign]
    stats = pstats.Stats(main_prof)
    for p in profiles:
        stats.add(p)
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumtime").print_stats("leanstep", top)
    rows = []
    marker = os.sep + "leanstep" + os.sep
    # leanstep's own functions by own time: the blocking waits (lock acquire, epoll, queue get)
    # dominate the unfiltered list and are idle time, not CPU
    ranked = sorted(((k, v) for k, v in stats.stats.items() if marker in k[0]), key=lambda kv: -kv[1][2])
    for (file, line, func), (cc, nc, tt, ct, _) in ranked[:top]:
        rows.append({"function": func, "where": f"{_short(file)}:{line}", "calls": nc,
                     "tottime_s": round(tt, 4), "cumtime_s": round(ct, 4)})
    return buf.getvalue(), rows


def _short(file: str) -> str:
    marker = os.sep + "leanstep" + os.sep
    if marker in file:
        return "leanstep/" + file.split(marker, 1)[1]
    return Path(file).name


# --------------------------------------------------------------------------- main

def measure_levels(snippets, common) -> list[dict[str, Any]]:
    """CPU of the text-only checks per level, then whole in-process runs per level (1 worker)."""
    from leanstep.check.policy import SourcePolicy
    from leanstep.check.source import split_source
    from leanstep.check.verdict import Trust
    from leanstep.check.verify import Checks, Submission, VerifyOptions, screen

    checks = Checks(policy=SourcePolicy(allowed_imports=frozenset({"Mathlib"})))
    submissions = [Submission(split_source(s.code), statement_of(s)) for s in snippets]
    n = len(snippets)
    rows = []
    for sub in submissions[:200]:  # warm the lexer's and the regexes' caches before timing
        screen(sub, VerifyOptions(), checks)
    for trust in (Trust.LENIENT, Trust.STRICT):
        options = VerifyOptions(trust=trust)
        c0 = time.process_time()
        rejected = sum(1 for sub in submissions if screen(sub, options, checks).rejected)
        cpu = time.process_time() - c0
        rows.append({"level": f"{trust} text checks (policy + statement text)", "cpu_ms_per_proof":
                     round(1000 * cpu / n, 4), "wall_ms_per_proof": None, "errors": rejected})
    for trust, statements in (("lenient", False), ("strict", False), ("strict", True)):
        out = run_leanstep(snippets, 1, trust, statements)
        rows.append({"level": f"{trust} in-process" + (" with statement" if statements else ""),
                     "cpu_ms_per_proof": round(1000 * out["cpu_s"] / n, 4),
                     "wall_ms_per_proof": round(1000 * out["wall_s"] / n, 4), "errors": out["errors"]})
    print("\n  Trust levels (1 worker; errors = snippets not valid, which must be 0):")
    common.print_table([[r["level"], r["cpu_ms_per_proof"], r["wall_ms_per_proof"], r["errors"]] for r in rows],
                       ["level", "CPU ms/proof", "wall ms/proof", "errors"])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(argv or []))
    from benchmarks import common

    global SANDBOX, TRUST
    SANDBOX, TRUST = args.sandbox, args.trust
    n = args.n or (2000 if args.quick else 10000)
    workers_list = [int(x) for x in (args.workers or ("1" if args.quick else "1,2")).split(",")]
    try:
        systems = common.chosen_systems(args.systems, SYSTEMS)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ.update(_zero_cost_env())  # REPLs started in this process inherit it
    snippets = make_snippets(n)
    print("Overhead benchmark (simulated REPL with zero import/command/proof cost)")
    print(f"  {n} distinct valid snippets on one header; workers {workers_list}; machine: {os.cpu_count()} CPUs")
    print(f"  HTTP: {args.batch_size} snippets per POST /verify, {args.concurrency} in flight; leanstep sandbox: "
          f"{args.sandbox or 'default'}, trust {args.trust}", flush=True)

    peer, missing = common.peers_for(systems, install=not args.no_install)

    runs: list[dict[str, Any]] = []
    for w in workers_list:
        for name in systems:
            if name in missing:
                continue
            print(f"  running {name} with {w} worker(s)...", flush=True)
            runners = {"raw": lambda: run_raw(snippets, w), "leanstep": lambda: run_leanstep(snippets, w, TRUST),
                       "leanstep-http": lambda: run_leanstep_http(snippets, w, args),
                       "kimina": lambda: run_kimina(snippets, w, args, peer),
                       "leaninteract": lambda: run_leaninteract(snippets, w, peer)}
            out = common.run_system(name, runners[name], missing, ours=name in ("raw", "leanstep", "leanstep-http"))
            if out is None:
                continue
            run = {"system": name, "workers": w, "wall_s": round(out["wall_s"], 4),
                   "proofs_per_s": round(n / out["wall_s"], 1),
                   "wall_ms_per_proof": round(1000 * out["wall_s"] / n, 4),
                   "cpu_ms_per_proof": round(1000 * out["cpu_s"] / n, 4),
                   "errors": out["errors"], "note": out.get("note", "")}
            run["max_proofs_per_core"] = round(n / out["cpu_s"], 1) if out["cpu_s"] > 0 else None
            runs.append(run)
            print(f"    {run['proofs_per_s']:.0f} proofs/s, {run['wall_ms_per_proof']:.3f} ms/proof wall, "
                  f"{run['cpu_ms_per_proof']:.3f} ms/proof orchestrator CPU, errors {out['errors']}", flush=True)

    floor = {r["workers"]: r["wall_ms_per_proof"] for r in runs if r["system"] == "raw"}
    rows = []
    for r in runs:
        base = floor.get(r["workers"])
        r["orchestration_ms_per_proof"] = round(r["wall_ms_per_proof"] - base, 4) \
            if base is not None and r["system"] != "raw" else None
        rows.append([r["system"], r["workers"], r["proofs_per_s"], r["wall_ms_per_proof"],
                     r["orchestration_ms_per_proof"], r["cpu_ms_per_proof"], r["max_proofs_per_core"], r["errors"]])
    print()
    common.print_table(rows, ["system", "workers", "proofs/s", "wall ms/proof", "orchestration ms/proof",
                              "CPU ms/proof", "max proofs/s/core", "errors"])
    print("  orchestration = wall per proof minus the raw REPL round trip at the same worker count;")
    print("  CPU = the orchestrator process only (server or library), REPLs and HTTP client excluded;")
    print("  max proofs/s/core = 1 / CPU per proof.")
    for name, reason in missing.items():
        print(f"  {name}: not measured: {reason[:600]}")

    profile_rows: list[dict[str, Any]] = []
    if not args.no_profile and "leanstep" in systems:
        pn = args.profile_n or max(200, n // 5)
        print(f"\n  cProfile of leanstep in-process verify_batch ({pn} snippets, 1 worker, all threads), "
              "top functions by own time:")
        text, profile_rows = profile_leanstep(snippets[:pn])
        common.print_table([[r["function"], r["where"], r["calls"], r["tottime_s"], r["cumtime_s"]]
                            for r in profile_rows[:12]], ["function", "where", "calls", "own s", "cum s"])
        prof_path = Path(args.json).with_name("overhead_profile.txt") if args.json \
            else common.RESULTS_DIR / "overhead_profile.txt"
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        prof_path.write_text(text)
        print(f"  full profile: {prof_path}")

    levels = measure_levels(snippets[: min(n, 2000)], common) if not args.no_levels and "leanstep" in systems \
        else []

    data = {"snippets": n, "workers": workers_list, "leanstep_sandbox": args.sandbox or "default",
            "leanstep_trust": args.trust, "levels": levels,
            "cost_model": "all simulator costs 0 (import, command, proof)",
            "runs": runs, "missing": missing, "profile_top": profile_rows,
            "peers": peer.versions if peer and peer.ok else {},
            "http": {"batch_size": args.batch_size, "concurrency": args.concurrency}}
    path = common.write_results("overhead", data, args.json)
    series: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        series.setdefault(r["system"], []).append((r["workers"], r["proofs_per_s"]))
    png = common.plot("overhead", series, "REPL workers", "proofs / s (zero-cost REPL)",
                      f"orchestration ceiling: {n} zero-cost snippets", args.png)
    print(f"  wrote {path}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
