"""``leanstep prove FILE.lean``: fill the file's ``sorry``s with proofs, checked by Lean.

Every ``sorry`` (or only those of ``--theorem NAME``) is a goal, proved in file
order with the same pool, model and proving flags as ``leanstep serve``
(``--repl sim --no-model`` runs it on the simulated REPL with the model-free
tactic list). A proof found is put in place of its ``sorry`` before the next
one is proved, so later goals see it. The edit is printed as a unified diff,
or written to the file with ``--write``. One line per goal on stderr says
whether it was proved, by which strategy, with how many expansions or samples,
and where the time went.

Exit status: 0 every goal was proved; 1 some were not (the others are still
filled); 2 usage error (no such file, no ``sorry``, a bad flag, a pool that
cannot start).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

from leanstep import config as config_mod
from leanstep.check.source import offset_of
from leanstep.progress import Progress
from leanstep.prove.prover import Prover, ProveRequest, ProveResult
from leanstep.prove.target import TargetError, open_goals
from leanstep.repl.protocol import Pos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the Lean file whose `sorry`s to prove")
    parser.add_argument("--theorem", default=None, metavar="NAME", help="prove only the `sorry`s of this declaration")
    parser.add_argument("--write", action="store_true", help="write the proofs into FILE (default: print a diff)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    config_mod.add_service_arguments(parser)


def fill(text: str, pos: Pos, proof: str) -> str:
    """``text`` with the ``sorry`` at ``pos`` replaced by ``proof`` (no blank left before a proof that starts
    on a new line)."""
    at = offset_of(text, pos)
    head = text[:at].rstrip(" \t") if proof.startswith("\n") else text[:at]
    return head + proof + text[at + len("sorry"):]


def describe(result: ProveResult) -> str:
    t = result.timings
    spent = (f"{t.total_ms / 1000:.2f} s (generation {t.generation_ms / 1000:.2f} s, "
             f"checking {t.checking_ms / 1000:.2f} s)")
    work = f"{result.expansions} expansions, {result.samples} samples"
    if result.proved:
        return f"proved by {result.strategy}: {work}, {spent}"
    why = result.stopped or "no proof"
    return f"not proved ({why}; tried {', '.join(result.tried) or 'nothing'}): {work}, {spent}"


def prove_file(prover: Prover, text: str, theorem: str | None,
               report: Callable[[Pos, ProveResult], None]) -> tuple[str, int, int]:
    """Prove the goals of ``text`` in order; returns the new text, and the goals proved and attempted."""
    skipped = proved = attempted = 0
    while True:
        goals = open_goals(text, theorem)
        if skipped >= len(goals):
            return text, proved, attempted
        pos = goals[skipped]
        attempted += 1
        result = prover.prove(ProveRequest(source=text, position=(pos.line, pos.column)))
        report(pos, result)
        if result.proved and result.proof is not None:
            text = fill(text, pos, result.proof)
            proved += 1
        else:
            skipped += 1


def run(args: argparse.Namespace) -> int:
    from leanstep.repl.launch import SetupError
    from leanstep.server.services import build_services

    path = Path(args.file)
    try:
        config = config_mod.load(args)
        text = path.read_text(encoding="utf-8")
        total = len(open_goals(text, args.theorem))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"leanstep prove: {exc}", file=sys.stderr)
        return 2
    if not total:
        where = f" in {args.theorem}" if args.theorem else ""
        print(f"leanstep prove: {path}: no `sorry`{where} to prove", file=sys.stderr)
        return 2
    progress = Progress(total, "goal", "prove", enabled=not args.no_progress)

    def report(pos: Pos, result: ProveResult) -> None:
        progress.write(f"{path}:{pos.line}:{pos.column}: {describe(result)}")
        progress.update()

    try:
        services = build_services(config)
    except SetupError as exc:
        progress.close()
        print(f"leanstep prove: {exc}", file=sys.stderr)
        return 2
    try:
        assert services.prover is not None
        new_text, proved, attempted = prove_file(services.prover, text, args.theorem, report)
    except TargetError as exc:
        print(f"leanstep prove: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        services.close()
    if args.write:
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
    else:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                                   f"a/{path}", f"b/{path}"))
    print(f"leanstep prove: {proved} of {attempted} goals proved", file=sys.stderr)
    return 0 if proved == attempted else 1
