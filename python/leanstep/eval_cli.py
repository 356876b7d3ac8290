"""``leanstep eval problems.jsonl --strategy search|whole --pass-k K``: pass@k of a prover on a problem set.

Input: JSON lines ``{"id", "header", "statement"}`` (``name`` and
``formal_statement`` are read too, as the datasets call them). Each problem gets
``--samples`` attempts (default K): whole-proof samples (each repaired
``--rounds`` times, default 0) or searches with seeds 0, 1, .... A problem's
checking stops at its first proof unless ``--check-all`` (see
``leanstep.prove.evaluate`` for both estimators). The pool, model and proving
flags are ``leanstep serve``'s.

Output: every attempt as a JSON line (``--output``), a progress bar, the
summary (pass@k for k = 1..K, problems solved, checks run and skipped, REPL
seconds of checking, generation seconds) on stdout, and a plot of pass@k
against k (``--plot``; needs matplotlib: ``pip install leanstep[eval]``).

Exit status: 0 the run finished (whatever was proved); 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import IO

from leanstep import config as config_mod
from leanstep.api.prove import attempt_record, run_record
from leanstep.api.records import json_line, problem_from_record
from leanstep.plotting import png_figure
from leanstep.progress import Progress
from leanstep.prove.evaluate import Evaluation, Problem, ProblemOutcome, Summary, default_parallel
from leanstep.verify_cli import UsageError, read_records


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a .jsonl file of problems: {id, header, statement} per line")
    parser.add_argument("--strategy", choices=("search", "whole"), default="whole",
                        help="best-first search (attempts: seeds) or whole proofs (attempts: samples)")
    parser.add_argument("--pass-k", type=int, default=1, metavar="K", help="report pass@1 .. pass@K (default 1)")
    parser.add_argument("--samples", type=int, default=None, metavar="N", help="attempts per problem (default K)")
    parser.add_argument("--rounds", type=int, default=0, help="repair rounds of each whole-proof sample (default 0)")
    parser.add_argument("--expansions", type=int, default=None, help="expansions of each search "
                                                                      "(default --prove-expansions)")
    parser.add_argument("--check-all", action="store_true",
                        help="check every attempt (every reward, as RL needs) instead of stopping at the first proof")
    parser.add_argument("--parallel", type=int, default=None,
                        help="problems at once (default: for whole proofs 2 x --max-repls, one per checking thread, "
                             "which lets first valid wins skip the most; for search --max-repls)")
    parser.add_argument("-o", "--output", default="eval.jsonl", help="every attempt as JSON lines (default eval.jsonl)")
    parser.add_argument("--plot", default="eval.png", help="pass@k plot, PNG (default eval.png; '' for none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    config_mod.add_service_arguments(parser, names=[f.name for f in fields(config_mod.Config) if f.name != "strategy"])


def read_problems(path: Path) -> list[Problem]:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    return read_records(path, lambda record, lineno: Problem(*problem_from_record(record, lineno)), "problems",
                        "`id`, `header` and `statement`")


def records(outcome: ProblemOutcome, strategy: str) -> list[dict]:
    """The JSON lines of one problem's attempts."""
    if strategy == "whole":
        return [attempt_record(outcome.problem.id, a) for r in outcome.results for a in r.attempts]
    return [run_record(outcome.problem.id, seed, r) for seed, r in enumerate(outcome.results)]


def summary_text(summary: Summary, k: int, check_all: bool) -> str:
    how = "every attempt checked" if check_all else "first valid wins"
    lines = [f"{summary.problems} problems, {summary.solved} solved ({how})"]
    lines += [f"  pass@{j}: {summary.pass_at[j]:.3f}" for j in range(1, k + 1)]
    lines.append(f"  attempts checked: {summary.attempts_checked}, skipped: {summary.attempts_skipped}")
    lines.append(f"  checking: {summary.checking.repl:.2f} REPL seconds ({summary.checking.checked} checks); "
                 f"generation: {summary.generation_seconds:.2f} s; wall: {summary.wall_seconds:.2f} s")
    return "\n".join(lines)


def plot(path: Path, summary: Summary, title: str) -> str | None:
    """Write the pass@k plot; None, or why there is none."""
    ks = sorted(summary.pass_at)
    try:
        with png_figure(path, figsize=(6.4, 4.2)) as (_, ax):
            ax.plot(ks, [summary.pass_at[k] for k in ks], marker="o")
            ax.set_xlabel("k (attempts)")
            ax.set_ylabel("pass@k")
            ax.set_ylim(0, 1.02)
            ax.set_xticks(ks)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
    except ImportError:
        return "no plot: matplotlib is not installed (pip install leanstep[eval])"
    return None


def run(args: argparse.Namespace) -> int:
    from leanstep.repl.launch import SetupError
    from leanstep.server.services import build_services

    try:
        config = config_mod.load(args)
        attempts = args.samples if args.samples is not None else args.pass_k
        if args.pass_k < 1 or attempts < args.pass_k:
            raise UsageError(f"--pass-k must be at least 1 and at most --samples ({attempts})")
        if args.rounds < 0:
            raise UsageError("--rounds must be 0 or more")
        problems = read_problems(Path(args.input))
    except ValueError as exc:
        print(f"leanstep eval: {exc}", file=sys.stderr)
        return 2
    try:
        services = build_services(config)
    except SetupError as exc:
        print(f"leanstep eval: {exc}", file=sys.stderr)
        return 2
    out: IO[str] = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    progress = Progress(len(problems), "problem", f"eval {args.strategy}", enabled=not args.no_progress)
    solved = [0]

    def on_outcome(outcome: ProblemOutcome) -> None:  # Evaluation.run calls it under its lock
        for record in records(outcome, args.strategy):
            out.write(json_line(record))
        out.flush()
        solved[0] += outcome.first_proof is not None
        progress.update(solved=solved[0])

    try:
        assert services.prover is not None
        evaluation = Evaluation(services.prover, args.strategy, k=args.pass_k, attempts=attempts,
                                rounds=args.rounds, expansions=args.expansions, check_all=args.check_all,
                                parallel=args.parallel or default_parallel(args.strategy, config.max_repls))
        _, summary = evaluation.run(problems, on_outcome)
    finally:
        progress.close()
        out.close()
        services.close()
    print(summary_text(summary, args.pass_k, args.check_all))
    if args.plot:
        title = f"{args.strategy}, {attempts} attempts per problem, {len(problems)} problems"
        why = plot(Path(args.plot), summary, title)
        print(why or f"plot: {args.plot}", file=sys.stderr)
    return 0
