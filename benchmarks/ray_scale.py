"""Ray scale-out: proofs per second with 1 and 2 verifier actors on one machine.

The workload is simulated (``--repl sim``): each proof costs ``--proof-seconds``
of REPL time, each header import ``--import-seconds``, and every actor owns a
pool of ``--repls`` REPLs. The simulated REPL sleeps rather than computes, so
two actors on one machine behave like two nodes with ``--repls`` cores each:
the ratio measures the router's overhead and balance, not the CPU count.
Headers are warm before timing (as on a long-running cluster); every proof is
distinct, so neither the de-duplication nor the result cache helps. One header
by default (the RL case: every proof starts ``import Mathlib``); ``--headers 2``
interleaves two, where header affinity decides how many imports are paid.

Cases: one pool in this process without Ray (the baseline one actor should
match), Ray with 1 and 2 actors, and 2 actors on zero-cost proofs (the
ceiling of the whole stack on this machine: router, Ray, simulated REPLs).

    python -m benchmarks.ray_scale            # 400 proofs x 0.1 s, 4 REPLs per actor
    python -m benchmarks.ray_scale --quick    # 96 proofs x 0.05 s, 2 REPLs per actor

Prints a table and writes JSON (``--json``, default ``benchmarks/results/ray_scale.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HEADERS = ("import Mathlib", "import Mathlib\nimport Aesop")


def workload(n: int, tag: str, headers: int = 1) -> list[dict[str, str]]:
    """``n`` distinct provable snippets, cycling over the first ``headers`` headers."""
    out = []
    for i in range(n):
        header = HEADERS[i % headers]
        out.append({"id": f"{tag}-{i}", "code": f"{header}\n\ntheorem {tag}_{i} (x : ℕ) : x + {i} = {i} + x := by omega\n"})
    return out


def run_case(num_actors: int, args: argparse.Namespace, config: Any, env: dict[str, str],
             proof_seconds: float | None = None, proofs: int | None = None) -> dict[str, Any]:
    """Time one batch on ``num_actors`` actors whose headers are already warm."""
    from leanstep.cluster import RayVerifier

    proof_seconds = args.proof_seconds if proof_seconds is None else proof_seconds
    env = {**env, "LEANSTEP_SIM_PROOF_SECONDS": f"{proof_seconds:g}"}
    with RayVerifier(num_actors=num_actors, config=config, actor_env=env, cache_size=0) as verifier:
        verifier.verify(workload(2 * num_actors * args.repls, f"warm{num_actors}", args.headers))
        snippets = workload(proofs or args.proofs, f"p{num_actors}", args.headers)
        start = time.perf_counter()
        results = verifier.verify(snippets, timeout=args.timeout)
        elapsed = time.perf_counter() - start
        counters = verifier.counters()
        reports = verifier.status()
    return _row(f"ray, {num_actors} actor{'s' if num_actors > 1 else ''}", num_actors, args, proof_seconds,
                results, elapsed, sub_batches=counters.sub_batches,
                imports=sum(r.repls_started for r in reports if r is not None))


def run_local(args: argparse.Namespace, config: Any, env: dict[str, str]) -> dict[str, Any]:
    """The same batch on one pool in this process, without Ray: the baseline an actor should match."""
    from benchmarks.common import scoped_environ
    from leanstep.check.verify import Verifier, VerifyOptions
    from leanstep.repl.launch import make_pool

    with scoped_environ(env):
        pool = make_pool(config)
    pool.start()
    try:
        pool.wait_warm(60)
        with Verifier(pool, cache_size=0) as verifier:
            options = VerifyOptions(timeout=args.timeout, use_cache=False)
            verifier.verify_batch(workload(2 * args.repls, "warmlocal", args.headers), options)
            snippets = workload(args.proofs, "local", args.headers)
            start = time.perf_counter()
            results = verifier.verify_batch(snippets, options)
            elapsed = time.perf_counter() - start
    finally:
        pool.shutdown()
    return _row("local pool, no Ray", 1, args, args.proof_seconds, results, elapsed)


def _row(name: str, pools: int, args: argparse.Namespace, proof_seconds: float, results: list[Any], elapsed: float,
         **extra: Any) -> dict[str, Any]:
    ideal = pools * args.repls / proof_seconds if proof_seconds > 0 else None
    rate = len(results) / elapsed
    return {
        "case": name, "pools": pools, "repls_per_pool": args.repls, "proof_seconds": proof_seconds,
        "proofs": len(results), "valid": sum(1 for r in results if _status(r) == "valid"),
        "seconds": round(elapsed, 3), "proofs_per_s": round(rate, 2),
        "ideal_proofs_per_s": round(ideal, 2) if ideal else None,
        "efficiency": round(rate / ideal, 3) if ideal else None, **extra,
    }


def _status(result: Any) -> str:
    return result.verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leanstep bench ray", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (well under a minute)")
    parser.add_argument("--proofs", type=int, default=None, help="proofs per timed batch")
    parser.add_argument("--proof-seconds", type=float, default=None, help="simulated cost of one proof")
    parser.add_argument("--import-seconds", type=float, default=None, help="simulated cost of one header import")
    parser.add_argument("--repls", type=int, default=None, help="REPLs per actor")
    parser.add_argument("--headers", type=int, choices=(1, 2), default=1,
                        help="distinct headers in the workload (2: header affinity matters)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per proof")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the zero-cost run (the stack's ceiling)")
    parser.add_argument("--json", type=Path, default=None, help="output (default benchmarks/results/ray_scale.json)")
    args = parser.parse_args(argv)
    args.proofs = args.proofs or (96 if args.quick else 400)
    args.proof_seconds = args.proof_seconds if args.proof_seconds is not None else (0.05 if args.quick else 0.1)
    args.import_seconds = args.import_seconds if args.import_seconds is not None else (0.3 if args.quick else 1.0)
    args.repls = args.repls or (2 if args.quick else 4)

    try:
        import ray
    except ImportError:
        print("leanstep bench ray: Ray is not installed: pip install leanstep[ray]", file=sys.stderr)
        return 2
    from benchmarks.common import print_table, sim_config, sim_environ, write_results

    config = sim_config(max_repls=args.repls, warm_headers=";;".join(HEADERS[:args.headers]))
    env = sim_environ(import_s=args.import_seconds, proof_s=args.proof_seconds)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        cases = [run_local(args, config, env), run_case(1, args, config, env), run_case(2, args, config, env)]
        if not args.no_ceiling:
            cases.append(run_case(2, args, config, env, proof_seconds=0.0, proofs=10 * args.proofs))
            cases[-1]["case"] += ", zero-cost proofs"
    finally:
        if started_ray:
            ray.shutdown()
    ratio = cases[2]["proofs_per_s"] / cases[1]["proofs_per_s"]

    print(f"Ray scale-out, simulated REPL: {args.proofs} proofs, {args.headers} header(s), "
          f"proof {args.proof_seconds:g} s, import {args.import_seconds:g} s, {args.repls} REPLs per pool, "
          f"ray {ray.__version__}, {os.cpu_count()} CPUs")
    print_table([[c["case"], c["seconds"], c["proofs_per_s"], c["ideal_proofs_per_s"], c["efficiency"],
                  f"{c['valid']}/{c['proofs']}"] for c in cases],
                ["case", "seconds", "proofs/s", "ideal", "efficiency", "valid"])
    print(f"2 actors / 1 actor: {ratio:.2f}x   (1 actor / local pool: "
          f"{cases[1]['proofs_per_s'] / cases[0]['proofs_per_s']:.2f})")

    report = {
        "quick": args.quick, "ray_version": ray.__version__, "headers": args.headers,
        "proof_seconds": args.proof_seconds, "import_seconds": args.import_seconds, "repls_per_pool": args.repls,
        "cases": cases, "ratio_2_over_1": round(ratio, 3),
    }
    path = write_results("ray_scale", report, args.json)
    print(f"wrote {path}")
    return 0 if all(c["valid"] == c["proofs"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
