"""Acceptance load for the verification path: ``POST /verify`` on the simulated REPL.

Two phases through a real server (waitress on 127.0.0.1) over a pool of real sim
REPL processes with simulated costs (``--import-seconds`` per header import,
``--proof-seconds`` per proof):

1. throughput: unique clean proofs over 3 headers; proofs/s against the ideal
   (workers / proof-seconds) and the orchestration overhead per proof;
2. faults: a batch with 3 headers, duplicates, injected hangs and crashes
   (defaults: 1,000 snippets, 30% duplicates, 2% hangs, 1% crashes). Checks
   that every snippet got a result, that hangs are reported as ``timeout`` and
   crashes as ``error`` per snippet, that the pool is back to its full warm size,
   and, after shutdown, that no REPL process is left (no zombie, no orphan).

Run: ``python benchmarks/verify_load.py [--quick] [--json FILE]``; exit status 0
when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import contextlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "python") not in sys.path:
    sys.path.insert(0, str(ROOT / "python"))

import psutil  # noqa: E402
import requests  # noqa: E402

from leanstep.config import load  # noqa: E402
from leanstep.repl.launch import make_pool  # noqa: E402
from leanstep.server.app import create_app  # noqa: E402
from leanstep.server.wsgi import serve_in_thread  # noqa: E402

HEADERS = ("import Mathlib", "import Mathlib.Tactic", "import Aesop")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI smoke tests)")
    p.add_argument("--snippets", type=int, default=None, help="snippets in the fault batch (default 1000; quick 200)")
    p.add_argument("--clean", type=int, default=None, help="unique proofs in the throughput phase (default 1000; quick 200)")
    p.add_argument("--workers", type=int, default=4, help="REPL processes (max_repls)")
    p.add_argument("--import-seconds", type=float, default=None, help="simulated header import (default 0.5; quick 0.1)")
    p.add_argument("--proof-seconds", type=float, default=None, help="simulated cost per proof (default 0.05; quick 0.02)")
    p.add_argument("--timeout", type=float, default=None, help="per-proof wall-clock limit (default 2; quick 1)")
    p.add_argument("--headers", type=int, default=3, choices=[1, 2, 3], help="distinct import headers")
    p.add_argument("--duplicates", type=float, default=0.30)
    p.add_argument("--hangs", type=float, default=0.02)
    p.add_argument("--crashes", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=100, help="codes per HTTP request")
    p.add_argument("--clients", type=int, default=4, help="concurrent HTTP requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    quick = args.quick
    args.snippets = args.snippets or (200 if quick else 1000)
    args.clean = args.clean if args.clean is not None else (200 if quick else 1000)
    args.import_seconds = args.import_seconds if args.import_seconds is not None else (0.1 if quick else 0.5)
    args.proof_seconds = args.proof_seconds if args.proof_seconds is not None else (0.02 if quick else 0.05)
    args.timeout = args.timeout or (1.0 if quick else 2.0)
    return args


# --------------------------------------------------------------------------- workload


def proof(i: int, header: str, kind: str) -> str:
    a, b = i % 97, (i * 7) % 89
    body = {
        "valid": f"theorem t{i} : {a} + {b} = {a + b} := by norm_num",
        "invalid": f"theorem t{i} : {a} + {b} = {a + b + 1} := by norm_num",
        "sorry": f"theorem t{i} (n : ℕ) : n + {a} = {a} + n := by sorry",
        "hang": f"theorem t{i} : True := by\n  sim_hang",
        "crash": f"theorem t{i} : True := by\n  sim_crash",
    }[kind]
    return f"{header}\n\n{body}\n"


def fault_workload(args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    n = args.snippets
    n_hang = max(1, round(n * args.hangs))
    n_crash = max(1, round(n * args.crashes))
    n_dup = round(n * args.duplicates)
    n_unique = n - n_dup
    kinds = ["hang"] * n_hang + ["crash"] * n_crash
    rest = n_unique - len(kinds)
    kinds += [rng.choices(["valid", "invalid", "sorry"], weights=[80, 15, 5])[0] for _ in range(rest)]
    rng.shuffle(kinds)
    unique = [{"kind": k, "code": proof(i, HEADERS[i % 3], k)} for i, k in enumerate(kinds)]
    # duplicates copy clean snippets only, so the injected fault rates stay as stated
    clean = [u for u in unique if u["kind"] not in ("hang", "crash")]
    items = unique + [dict(rng.choice(clean)) for _ in range(n_dup)]
    rng.shuffle(items)
    for i, item in enumerate(items):
        item["custom_id"] = f"s{i}"
    return items


# --------------------------------------------------------------------------- client side


def send(url: str, items: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=args.clients)
    session.mount("http://", adapter)
    batches = [items[i:i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def post(batch: list[dict[str, Any]]) -> None:
        payload = {"codes": [{"custom_id": x["custom_id"], "proof": x["code"]} for x in batch],
                   "timeout": args.timeout}
        resp = session.post(f"{url}/verify", json=payload, timeout=3600)
        resp.raise_for_status()
        with lock:
            for r in resp.json()["results"]:
                results[r["custom_id"]] = r

    with ThreadPoolExecutor(args.clients) as executor:
        list(executor.map(post, batches))
    session.close()
    return results


def repl_processes(root_pid: int) -> list[psutil.Process]:
    """Every live descendant of this process that runs the simulated REPL."""
    found = []
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            if "leanstep.sim" in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


def leftovers(known_pids: set[int]) -> list[str]:
    """Zombies among our children and any sim REPL we started that still runs anywhere (orphans)."""
    problems = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                problems.append(f"zombie pid {proc.pid}")
        except psutil.NoSuchProcess:
            continue
    for pid in known_pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and "leanstep.sim" in " ".join(proc.cmdline()):
                problems.append(f"REPL pid {pid} still running")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return problems


# --------------------------------------------------------------------------- run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global HEADERS
    HEADERS = HEADERS[: args.headers] * (3 // args.headers) + HEADERS[: 3 % args.headers]
    rng = random.Random(args.seed)
    for key in [k for k in os.environ if k.startswith("LEANSTEP_SIM_")]:
        del os.environ[key]
    os.environ["LEANSTEP_SIM_IMPORT_SECONDS"] = str(args.import_seconds)
    os.environ["LEANSTEP_SIM_PROOF_SECONDS"] = str(args.proof_seconds)
    config = load({"repl": "sim", "max_repls": args.workers, "sandbox": "none", "queue_wait": 600,
                   "warm_headers": HEADERS, "max_batch": 100000, "threads": max(8, args.clients * 2),
                   "cache_size": 100000}, environ={})
    pool = make_pool(config)
    pool.start()
    app = create_app(config, pool=pool)
    serving = contextlib.ExitStack()
    url = serving.enter_context(serve_in_thread(app, config))
    seen_pids: set[int] = set()
    checks: dict[str, bool] = {}
    figures: dict[str, Any] = {"workers": args.workers, "import_seconds": args.import_seconds,
                               "proof_seconds": args.proof_seconds, "timeout": args.timeout}
    stop_watch = threading.Event()

    def watch_pids() -> None:
        while not stop_watch.is_set():
            seen_pids.update(p.pid for p in repl_processes(os.getpid()))
            stop_watch.wait(0.05)

    watcher = threading.Thread(target=watch_pids, daemon=True)
    watcher.start()
    try:
        pool.wait_warm(60)
        # phase 1: throughput on unique clean proofs
        if args.clean:
            clean = [{"custom_id": f"c{i}", "code": proof(100000 + i, HEADERS[i % 3], "valid"), "kind": "valid"}
                     for i in range(args.clean)]
            t0 = time.monotonic()
            got = send(url, clean, args)
            elapsed = time.monotonic() - t0
            ideal = args.workers / args.proof_seconds
            measured = len(clean) / elapsed
            overhead = elapsed * args.workers / len(clean) - args.proof_seconds
            checks["throughput phase: every proof valid"] = (
                len(got) == len(clean) and all(r["verdict"] == "valid" for r in got.values()))
            figures.update(clean_proofs=len(clean), clean_seconds=round(elapsed, 3),
                           throughput=round(measured, 2), ideal_throughput=round(ideal, 2),
                           efficiency=round(measured / ideal, 3), overhead_ms_per_proof=round(overhead * 1000, 2))
            print(f"throughput: {len(clean)} unique proofs in {elapsed:.2f} s = {measured:.1f} proofs/s; "
                  f"ideal {ideal:.1f} ({args.workers} workers / {args.proof_seconds:g} s) -> {measured / ideal:.0%}; "
                  f"orchestration overhead {overhead * 1000:.1f} ms per proof")

        # phase 2: the fault-injection batch
        items = fault_workload(args, rng)
        before = pool.stats().counters
        t0 = time.monotonic()
        results = send(url, items, args)
        elapsed = time.monotonic() - t0
        verdicts = Counter(r["verdict"] for r in results.values())
        by_kind: dict[str, Counter[str]] = {}
        for item in items:
            r = results.get(item["custom_id"])
            by_kind.setdefault(item["kind"], Counter())[r["verdict"] if r else "missing"] += 1
        checks["every snippet got a result"] = set(results) == {x["custom_id"] for x in items}
        checks["hangs reported as timeout per snippet"] = set(by_kind.get("hang", {})) == {"timeout"} and all(
            "timed out" in results[x["custom_id"]].get("error", "") for x in items if x["kind"] == "hang")
        checks["crashes reported as error per snippet"] = set(by_kind.get("crash", {})) == {"error"} and all(
            "lost" in results[x["custom_id"]].get("error", "") for x in items if x["kind"] == "crash")
        checks["clean snippets judged right"] = (
            set(by_kind.get("valid", {})) <= {"valid"} and set(by_kind.get("invalid", {})) <= {"invalid"}
            and set(by_kind.get("sorry", {})) <= {"invalid"})
        warm = pool.wait_warm(60)
        stats = pool.stats()
        checks["pool back to its full warm size"] = (
            warm and stats.workers_by_state.get("idle", 0) == args.workers and len(pool.pids()) == args.workers)
        after = stats.counters
        unique = len({x["code"] for x in items})
        figures.update(
            snippets=len(items), unique=unique, fault_seconds=round(elapsed, 3),
            verdicts=dict(verdicts), by_kind={k: dict(v) for k, v in by_kind.items()},
            timeouts=after.timeouts - before.timeouts, lost=after.lost - before.lost,
            started=after.started - before.started, evicted=after.evicted - before.evicted,
            cache=app.extensions["leanstep"].verifier.cache.stats(),
        )
        print(f"faults: {len(items)} snippets ({unique} unique, {len(items) - unique} duplicates) in {elapsed:.2f} s "
              f"({len(items) / elapsed:.1f} snippets/s)")
        print("  verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
        print("  by injected kind: " + "; ".join(f"{k}: {dict(v)}" for k, v in sorted(by_kind.items())))
        print(f"  REPLs: {figures['timeouts']} killed at the timeout, {figures['lost']} lost, "
              f"{figures['started']} started, {figures['evicted']} evicted; pool {stats.workers_by_state}")
    finally:
        stop_watch.set()
        watcher.join(2)
        serving.close()
        app.extensions["leanstep"].close()
        pool.shutdown()
    problems = leftovers(seen_pids)
    checks["no zombie or orphan REPL after shutdown"] = not problems and not repl_processes(os.getpid())
    figures["repl_pids_seen"] = len(seen_pids)
    if problems:
        print("  leftovers: " + ", ".join(problems))
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    figures["checks"] = checks
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
