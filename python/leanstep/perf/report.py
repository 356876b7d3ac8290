"""``leanstep plan FILE``: the planner's curves as a table, a plot and settings for a target hit ratio."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from leanstep.perf.plan import HeaderPlan, Recommendation, ResultCachePlan, header_plan, recommend, result_cache_plan
from leanstep.perf.trace import read_trace
from leanstep.plotting import png_figure

CACHE_SIZES = (1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", help="a trace written by `leanstep serve --trace FILE`")
    parser.add_argument("--target", type=float, default=0.9, help="hit ratio to size the caches for (default 0.9)")
    parser.add_argument("--max-repls", type=int, default=16, help="largest pool to consider (default 16)")
    parser.add_argument("--headers-per-repl", default="1,2,4,8",
                        help="values of --headers-per-repl to compare, comma-separated (default 1,2,4,8)")
    parser.add_argument("--import-s", type=float, default=1.0,
                        help="import seconds of a header the trace has no figure for (default 1)")
    parser.add_argument("--png", default=None, help="the plot (default: FILE.plan.png beside the trace)")
    parser.add_argument("--json", default=None, help="also write the curves and the recommendation as JSON here")


def run(args: argparse.Namespace) -> int:
    path = Path(args.trace)
    try:
        per_repl = sorted({int(x) for x in args.headers_per_repl.split(",") if x.strip()})
        if not per_repl or min(per_repl) < 1 or args.max_repls < 1 or not 0 < args.target <= 1:
            raise ValueError("--headers-per-repl and --max-repls must be positive, --target in (0, 1]")
        segments = read_trace(path)
    except (OSError, ValueError) as exc:
        print(f"leanstep plan: {exc}", file=sys.stderr)
        return 2
    results = result_cache_plan(segments)
    headers = [header_plan(segments, h, args.max_repls, args.import_s) for h in per_repl]
    advice = recommend(results, headers, args.target)
    print(render(path, len(segments), results, headers, advice))
    png = Path(args.png) if args.png else path.with_name(path.name + ".plan.png")
    if plot(png, results, headers, args.target):
        print(f"wrote {png}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "segments": len(segments), "snippets": results.snippets, "batch_duplicates": results.batch_duplicates,
            "result_cache": {"lookups": results.curve.references, "distances": results.curve.distances},
            "header_envs": [{"headers_per_repl": h.headers_per_repl, "checks": h.curve.references,
                             "distances": h.curve.distances, "miss_import_seconds": h.miss_import_seconds}
                            for h in headers],
            "recommendation": asdict(advice)}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _pct(ratio: float) -> str:
    return f"{100 * ratio:5.1f}%"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def render(path: Path, segments: int, results: ResultCachePlan, headers: Sequence[HeaderPlan],
           advice: Recommendation) -> str:
    """The plan as text: the result cache by size, header envs by pool size and headers per REPL, the advice."""
    curve = results.curve
    lines = [(f"leanstep plan {path}: {segments} server run(s), {results.snippets} snippets; "
             f"{results.batch_duplicates} answered by an identical snippet of their own request, "
             f"{curve.references} result-cache lookups"), "",
             "Result cache (LRU; hit ratio of the lookups by --cache-size):"]
    distinct = len(curve.distances) - 1
    sizes = [s for s in CACHE_SIZES if s < max(distinct, 1)] + [max(distinct, 1)]
    widths = [14] + [9] * len(sizes)
    lines.append(_row(["--cache-size", *(f"{s:,}" for s in sizes)], widths))
    lines.append(_row(["hit ratio", *(_pct(curve.ratio_at(s)) for s in sizes)], widths))
    lines.append(f"  (from {distinct:,} entries on, nothing more is gained: {_pct(curve.ceiling).strip()})")
    checks = headers[0].curve.references if headers else 0
    lines += ["", (f"Header envs ({checks} checks reached the pool; share that found their header imported, and "
                  "import seconds of the misses, by --max-repls and --headers-per-repl):")]
    widths = [11] + [17] * len(headers)
    lines.append(_row(["--max-repls", *(f"per REPL {h.headers_per_repl}" for h in headers)], widths))
    largest = len(headers[0].miss_import_seconds) - 1 if headers else 0
    for size in sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, largest} & set(range(1, largest + 1))):
        lines.append(_row([str(size), *(f"{_pct(h.curve.ratio_at(size))} {h.import_seconds_at(size):8.1f} s"
                                        for h in headers)], widths))
    lines += ["", f"For a {_pct(advice.target).strip()} hit ratio:"]
    if advice.cache_size is not None:
        lines.append(f"  --cache-size {advice.cache_size}")
    else:
        unbounded = _pct(advice.cache_ceiling).strip()
        lines.append(f"  result cache: no size reaches it on this trace (unbounded: {unbounded})")
    if advice.max_repls is not None:
        lines.append(f"  --max-repls {advice.max_repls} or more, --headers-per-repl {advice.headers_per_repl}: the "
                     "smallest pool that does (a bigger one never imports more, and checks more proofs at once; each "
                     "REPL keeps up to that many imports in memory)")
    else:
        lines.append(f"  header envs: no pool up to --max-repls {largest} reaches it; the best is "
                     f"--headers-per-repl {advice.headers_per_repl} at {_pct(advice.header_ceiling).strip()}")
    return "\n".join(lines)


def plot(path: Path, results: ResultCachePlan, headers: Sequence[HeaderPlan], target: float) -> bool:
    """Hit ratio against size for both caches, and the target, as a PNG; False (and a line on stderr) without
    matplotlib."""
    try:
        with png_figure(path, nrows=1, ncols=2, figsize=(10, 4)) as (_, (left, right)):
            _draw(left, right, results, headers, target)
    except ImportError:
        print("leanstep plan: no plot (matplotlib is not installed)", file=sys.stderr)
        return False
    return True


def _draw(left: Any, right: Any, results: ResultCachePlan, headers: Sequence[HeaderPlan], target: float) -> None:
    curve = results.curve
    sizes = list(range(1, len(curve.distances)))
    if sizes:
        left.step(sizes, [100 * curve.ratio_at(s) for s in sizes], where="post")
        left.set_xscale("log")
    left.set_xlabel("--cache-size (entries)")
    left.set_ylabel("hit ratio of the lookups (%)")
    left.set_title(f"Result cache: {curve.references} lookups", fontsize=10)
    left.set_ylim(0, 100)
    left.grid(alpha=0.3)
    for plan in headers:
        pools = list(range(1, len(plan.miss_import_seconds)))
        right.plot(pools, [100 * plan.curve.ratio_at(n) for n in pools], marker="o", markersize=3,
                   label=f"--headers-per-repl {plan.headers_per_repl}")
    right.set_xlabel("--max-repls")
    right.set_ylabel("checks that found their header imported (%)")
    right.set_title(f"Header envs: {headers[0].curve.references if headers else 0} checks", fontsize=10)
    for ax in (left, right):
        ax.axhline(100 * target, color="grey", linewidth=0.8, linestyle="--", label=f"target {100 * target:g}%")
    left.legend(fontsize=8, loc="upper left")
    right.set_ylim(0, 100)
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="lower right")


__all__ = ["add_arguments", "plot", "render", "run"]
