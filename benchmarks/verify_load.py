"""Acceptance load for the verification path: ``POST /verify`` on the simulated REPL.

Two phases through a real server (waitress on 127.0.0.1) over a pool of real sim
REPL processes with simulated costs (``--import-seconds`` per header import,
``--proof-seconds`` per proof):

1. throughput: unique clean proofs over 3 headers; proofs/s against the ideal
   (workers / proof-seconds) and the orchestration overhead per proof;
2. faults: a batch with 3 headers, duplicates, injected hangs and crashes
   (defaults: 1,000 snippets, 30% duplicates, 2% hangs, 1% crashes), while a
   chaos thread SIGKILLs random REPLs (``--kills-per-minute``) and attackers hold
   half-open connections (``--half-open``: a request line and one header, then
   silence). Checks that every snippet was answered exactly once with its
   expected verdict (hangs ``timeout``, crashes ``error``; a snippet whose REPL
   the chaos thread killed may be ``error`` "REPL process lost" or "could not
   start a REPL", at most one check per kill; duplicates of a snippet share its check), that ``/health`` answered within a second throughout, that the pool is
   back to its full warm size, and, after shutdown, that no REPL process (zombie
   or orphan), pids cgroup or worker directory is left. The server's RSS before
   and after is printed.

``--soak`` is the long version: 10,000 snippets, 30 kills a minute, 100 half-open
connections. The pool runs in the server's default sandbox (``--sandbox``).

Run: ``python benchmarks/verify_load.py [--quick | --soak] [--json FILE]``; exit
status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import requests  # noqa: E402

from benchmarks.common import serving, sim_config  # noqa: E402
from leanstep.repl.sandbox import CGROUP_PREFIX, _pids_cgroup_root  # noqa: E402
from leanstep.server.services import build_services  # noqa: E402

HEADERS = ("import Mathlib", "import Mathlib.Tactic", "import Aesop")
EXPECTED = {"valid": "valid", "invalid": "invalid", "sorry": "invalid", "hang": "timeout", "crash": "error"}
LOST_TO_KILL = ("REPL process lost", "could not start a REPL")  # a kill while checking, or while importing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI smoke tests)")
    size.add_argument("--soak", action="store_true", help="10,000 snippets under REPL kills and half-open connections")
    p.add_argument("--snippets", type=int, default=None,
                   help="snippets in the fault batch (default 1000; quick 200; soak 10000)")
    p.add_argument("--clean", type=int, default=None,
                   help="unique proofs in the throughput phase (default 1000; quick 200; soak 0)")
    p.add_argument("--kills-per-minute", type=float, default=None,
                   help="random REPLs SIGKILLed per minute during the fault batch (default 10; quick 120; soak 30)")
    p.add_argument("--half-open", type=int, default=None,
                   help="half-open connections held during the fault batch (default 50; quick 20; soak 100)")
    p.add_argument("--sandbox", default="auto", help="the pool's sandbox mode (default: the server's default)")
    p.add_argument("--max-restarts-per-minute", type=int, default=None,
                   help="the pool's restart budget (default: the server's; soak 600, since its injected hangs, "
                        "crashes and kills are meant to be restarted, not throttled)")
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
    args.snippets = args.snippets or (200 if quick else 10000 if args.soak else 1000)
    args.clean = args.clean if args.clean is not None else (200 if quick else 0 if args.soak else 1000)
    if args.kills_per_minute is None:
        args.kills_per_minute = 120.0 if quick else 30.0 if args.soak else 10.0
    if args.max_restarts_per_minute is None:
        args.max_restarts_per_minute = 600 if args.soak else 0
    if args.half_open is None:
        args.half_open = 20 if quick else 100 if args.soak else 50
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


def send(url: str, items: list[dict[str, Any]], args: argparse.Namespace,
         answers: Counter[str] | None = None) -> dict[str, dict[str, Any]]:
    """POST ``items`` in batches; ``answers`` counts how often each id came back."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=args.clients)
    session.mount("http://", adapter)
    batches = [items[i:i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    answers = Counter() if answers is None else answers

    def post(batch: list[dict[str, Any]]) -> None:
        payload = {"codes": [{"custom_id": x["custom_id"], "proof": x["code"]} for x in batch],
                   "timeout": args.timeout}
        resp = session.post(f"{url}/verify", json=payload, timeout=3600)
        resp.raise_for_status()
        with lock:
            for r in resp.json()["results"]:
                results[r["custom_id"]] = r
                answers[r["custom_id"]] += 1

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


def hold_half_open(url: str, count: int) -> list[socket.socket]:
    """Connections that send a request line and one header, then nothing (slow-loris clients)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"POST /verify HTTP/1.1\r\nHost: leanstep\r\n")
        held.append(sock)
    return held


class Chaos(threading.Thread):
    """SIGKILLs a random running REPL at a steady rate, as an OOM killer would; counts its kills."""

    def __init__(self, per_minute: float, rng: random.Random) -> None:
        super().__init__(name="chaos", daemon=True)
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.rng = rng
        self.kills = 0
        self.looks = 0  # times it looked for a REPL to kill
        self.most_seen = 0  # the most REPLs it found at one look
        self.error: str | None = None  # the last failed look, for the report when nothing was killed
        self.stop = threading.Event()

    def run(self) -> None:
        # the first kill early, so that even a short batch sees one; until it lands, look again soon
        wait = min(self.interval, 0.25)
        while self.interval and not self.stop.wait(wait):
            wait = self.interval if self._kill_one() else min(self.interval, 0.05)

    def _kill_one(self) -> bool:
        """SIGKILL one running REPL; False when none could be killed (none running, or it died meanwhile)."""
        self.looks += 1
        try:
            leaves = [p for p in repl_processes(os.getpid()) if not _children(p)]
            self.most_seen = max(self.most_seen, len(leaves))
            if not leaves:
                return False
            self.rng.choice(leaves).send_signal(signal.SIGKILL)
        except Exception as exc:  # a failed look must not end the thread: the report says what failed
            self.error = repr(exc)
            return False
        self.kills += 1
        return True

    def summary(self) -> str:
        failed = f"; last failed look: {self.error}" if self.error else ""
        return (f"{self.kills} REPLs SIGKILLed in {self.looks} looks (at most {self.most_seen} REPLs seen at "
                f"once{failed})")


class HealthProbe(threading.Thread):
    """Asks ``/health`` twice a second and keeps the slowest answer (None: one failed)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="health-probe", daemon=True)
        self.url = url
        self.slowest: float | None = 0.0
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            started = time.monotonic()
            try:
                requests.get(self.url + "/health", timeout=5).raise_for_status()
                self.slowest = max(self.slowest or 0.0, time.monotonic() - started)
            except requests.RequestException:
                self.failures += 1


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children()
    except psutil.Error:
        return []


def our_cgroups() -> set[Path]:
    root = _pids_cgroup_root()
    return set() if root is None else set(root.glob(f"{CGROUP_PREFIX}{os.getpid()}-*"))


def worker_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"leanstep-worker-{os.getpid()}-*"))  # this server's pools only


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
    dirs_before, cgroups_before = worker_dirs(), our_cgroups()
    rss_before = psutil.Process().memory_info().rss
    config = sim_config(max_repls=args.workers, sandbox=args.sandbox, queue_wait=600,
                        max_restarts_per_minute=args.max_restarts_per_minute, warm_headers=HEADERS,
                        max_batch=100000, threads=max(8, args.clients * 2), cache_size=100000)
    services = build_services(config, suggest=False)
    pool = services.pool
    http = contextlib.ExitStack()
    url = http.enter_context(serving(services))
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
        half_open = hold_half_open(url, args.half_open)
        chaos, health = Chaos(args.kills_per_minute, rng), HealthProbe(url)
        chaos.start()
        health.start()
        answers: Counter[str] = Counter()
        t0 = time.monotonic()
        try:
            results = send(url, items, args, answers)
        finally:
            elapsed = time.monotonic() - t0
            chaos.stop.set()
            health.stop.set()
            chaos.join(5)
            health.join(10)
            for sock in half_open:
                sock.close()
        verdicts = Counter(r["verdict"] for r in results.values())
        by_kind: dict[str, Counter[str]] = {}
        wrong, killed_by_chaos, checks_lost = [], 0, set()
        for item in items:
            r = results.get(item["custom_id"])
            by_kind.setdefault(item["kind"], Counter())[r["verdict"] if r else "missing"] += 1
            if r is None or r["verdict"] == EXPECTED[item["kind"]]:
                continue
            if r["verdict"] == "error" and any(m in (r.get("error") or "") for m in LOST_TO_KILL):
                killed_by_chaos += 1
                checks_lost.add(item["code"])  # duplicates of one snippet share its check
            else:
                wrong.append((item["custom_id"], item["kind"], r["verdict"], r.get("error") or r.get("reasons")))
        checks["every snippet answered exactly once"] = (
            set(results) == {x["custom_id"] for x in items} and set(answers.values()) == {1})
        checks["every snippet got its expected verdict"] = not wrong
        checks["hangs reported as timeout per snippet"] = all(
            "timed out" in (results[x["custom_id"]].get("error") or "") for x in items
            if x["kind"] == "hang" and results[x["custom_id"]]["verdict"] == "timeout")
        checks["REPL-lost answers only for the chaos thread's kills"] = len(checks_lost) <= chaos.kills
        checks["the chaos thread killed REPLs"] = chaos.kills > 0 or not args.kills_per_minute
        checks["/health answered within 1 s throughout"] = (
            health.failures == 0 and health.slowest is not None and health.slowest < 1.0)
        if wrong:
            print("  wrong verdicts (first 5): " + "; ".join(map(str, wrong[:5])))
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
            cache=asdict(services.verifier.stats().cache), chaos_kills=chaos.kills,
            lost_to_chaos=killed_by_chaos, checks_lost_to_chaos=len(checks_lost), half_open=args.half_open,
            health_slowest_s=round(health.slowest or 0.0, 3), health_failures=health.failures,
        )
        print(f"faults: {len(items)} snippets ({unique} unique, {len(items) - unique} duplicates) in {elapsed:.2f} s "
              f"({len(items) / elapsed:.1f} snippets/s)")
        print("  verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
        print("  by injected kind: " + "; ".join(f"{k}: {dict(v)}" for k, v in sorted(by_kind.items())))
        print(f"  REPLs: {figures['timeouts']} killed at the timeout, {figures['lost']} lost, "
              f"{figures['started']} started, {figures['evicted']} evicted; pool {stats.workers_by_state}")
        print(f"  chaos: {chaos.summary()}, {len(checks_lost)} checks ({killed_by_chaos} snippets) "
              "answered 'REPL process lost' "
              f"for it; {args.half_open} half-open connections held; slowest /health {health.slowest or 0:.3f} s, "
              f"{health.failures} failed")
    finally:
        stop_watch.set()
        watcher.join(2)
        http.close()
        services.close()
    problems = leftovers(seen_pids)
    checks["no zombie or orphan REPL after shutdown"] = not problems and not repl_processes(os.getpid())
    leaked_dirs, leaked_cgroups = worker_dirs() - dirs_before, our_cgroups() - cgroups_before
    checks["no worker directory or pids cgroup left"] = not leaked_dirs and not leaked_cgroups
    rss_after = psutil.Process().memory_info().rss
    figures.update(repl_pids_seen=len(seen_pids), sandbox=args.sandbox, leaked_dirs=len(leaked_dirs),
                   leaked_cgroups=len(leaked_cgroups), server_rss_mb_before=round(rss_before / 2**20, 1),
                   server_rss_mb_after=round(rss_after / 2**20, 1))
    print(f"  server RSS {rss_before / 2**20:.0f} MB before, {rss_after / 2**20:.0f} MB after; "
          f"{len(leaked_dirs)} worker dirs and {len(leaked_cgroups)} cgroups left")
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
