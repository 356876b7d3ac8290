"""``leanstep extract FILE.lean|DIR|proofs.jsonl -o steps.jsonl``: tactic steps for training, from Lean files.

Each file runs once on the REPL pool, through the verifier (its wall-clock timeout, sandbox and
parallel fan-out; at the ``lenient`` level, with the REPL's ``substantive`` info tree), and every
tactic step in it becomes one JSON line (see :mod:`leanstep.data.steps` for which nodes are steps),
a file's steps together and in source order, files in the order they finish::

    {"file", "decl", "position", "end_position", "state_before", "tactic", "state_after",
     "goals_before", "goals_after", "prompt", "completion"}

``state_before``/``state_after`` are whole states (goals separated by a blank line, ``no goals``
when none is left), ``goals_before``/``goals_after`` the same goals as a list. ``prompt`` and
``completion`` are the proofstep training text, ``[GOAL]<goal>[PROOFSTEP]`` then the tactic, made by
the code that renders prompts when serving (``generate.prompts.training_example``) from the goal the
``llmstep`` tactic sends: the main goal, ``goals_before[0]``.

Not every step is written: a ``sorry``/``admit`` step teaches nothing, and steps of a declaration
with an error may be Lean's recovery rather than a proof (an unknown identifier closes the goal
with an error), so that declaration's steps are left out. Each file's outcome (steps written,
steps left out and why, or the error that stopped it: a timeout, a lost REPL, a header that does
not import) is one line of ``<output stem>.files.jsonl`` and a line on stderr; an error is never
fatal to the run.

Every named theorem and lemma the files prove (no error, no ``sorry``) is also a problem for
``leanstep eval``, one line of ``<output stem>.problems.jsonl``::

    {"id": "Demo.and_swap", "file": "Demo/Logic.lean", "header": "<the file's imports>",
     "statement": "theorem Demo.and_swap (p q : Prop) (h : p ∧ q) : q ∧ p"}

``id`` is the ``decl`` of the theorem's steps; the statement is the declaration's head with its full
name (``check.statement.standalone_statements``). ``leanstep finetune`` picks the held-out
declarations' problems from this file.

Resuming: run the same command again and the files that finished (same text, no error) are
skipped; steps of a file that was cut off, or whose text changed, are removed and extracted again.
``--overwrite`` starts afresh.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from leanstep import config as config_mod
from leanstep.api.records import json_line
from leanstep.check.source import Declaration, declarations, split_source
from leanstep.check.statement import standalone_statements
from leanstep.check.verdict import Trust, Verdict
from leanstep.check.verify import Snippet, VerifyOptions, VerifyResult
from leanstep.cli import add_ray_arguments
from leanstep.data.steps import TacticStep, steps_from_infotree
from leanstep.generate.prompts import training_example
from leanstep.progress import Progress
from leanstep.repl.launch import SetupError
from leanstep.repl.protocol import InfoTree, Pos
from leanstep.verify_cli import (
    POOL_SETTINGS,
    UsageError,
    lean_files,
    open_verifier,
    read_snippets,
    settings_from_args,
)

TRAINING_FORMAT = "proofstep"  # the format of the records' prompt/completion
INFOTREE = "substantive"
PLACEHOLDER_TACTICS = frozenset({"sorry", "admit"})
SKIP_PLACEHOLDER = "sorry"
SKIP_ERROR_DECLARATION = "declaration with an error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input",
                        help="a .lean file, a directory of .lean files, or a .jsonl file ({id, code} per line)")
    parser.add_argument("-o", "--output", required=True,
                        help="the JSON-lines file of steps (resumed when it exists; a file log goes beside it)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock seconds per file (default: the pool's --timeout setting)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    pool = parser.add_argument_group("REPL pool (a local one, or one per node with --ray)")
    config_mod.add_arguments(pool, ("pool",), names=POOL_SETTINGS)
    add_ray_arguments(parser)


# --------------------------------------------------------------------------- #
# Inputs


@dataclass(frozen=True)
class LeanSource:
    """One input: its name in the records and its text, or why it could not be read."""

    file: str
    code: str | None
    error: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.code or "").encode("utf-8")).hexdigest()


def read_sources(path: Path) -> list[LeanSource]:
    """The inputs: one .lean file, the .lean files of a directory (named by relative path), or JSONL records.

    A file that is not UTF-8 is an input with an error, not a reason to stop.
    """
    if path.is_dir():
        return [_read_lean(f, str(f.relative_to(path))) for f in lean_files(path)]
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.suffix == ".lean":
        return [_read_lean(path, path.name)]
    sources = [LeanSource(s.id, s.code) for s in read_snippets(path)]  # a .jsonl file, or a usage error
    repeated = [name for name, n in Counter(s.file for s in sources).items() if n > 1]
    if repeated:
        raise UsageError(f"{path}: the id {repeated[0]!r} names more than one snippet; steps are filed by id")
    return sources


def _read_lean(path: Path, name: str) -> LeanSource:
    try:
        return LeanSource(name, path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return LeanSource(name, None, f"not UTF-8 text ({exc})")
    except OSError as exc:
        return LeanSource(name, None, f"cannot be read ({exc.strerror or exc})")


# --------------------------------------------------------------------------- #
# Steps of one file


@dataclass(frozen=True)
class StepRecord:
    """One step of one file, as a line of the output."""

    file: str
    decl: str | None
    step: TacticStep

    def to_json(self) -> dict[str, Any]:
        example = training_example(TRAINING_FORMAT, self.step.main_goal, self.step.tactic)
        return {"file": self.file, "decl": self.decl, "position": self.step.pos.to_json(),
                "end_position": self.step.end_pos.to_json(), "state_before": self.step.state_before,
                "tactic": self.step.tactic, "state_after": self.step.state_after,
                "goals_before": list(self.step.goals_before), "goals_after": list(self.step.goals_after),
                "prompt": example.prompt.text, "completion": example.completion}


@dataclass(frozen=True)
class ProblemRecord:
    """A theorem a file proves, as a problem for ``leanstep eval`` (a line of the problems file)."""

    file: str
    id: str  # the theorem's full name: the ``decl`` of its steps
    header: str
    statement: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "header": self.header, "statement": self.statement}


@dataclass
class FileSteps:
    """What one file gave: its steps and proved theorems, the steps left out (by reason), or the error
    that stopped it."""

    file: str
    digest: str
    records: list[StepRecord] = field(default_factory=list)
    problems: list[ProblemRecord] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def log_entry(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.digest, "steps": len(self.records),
                "skipped": dict(self.skipped), "error": self.error}


def _declaration_name(decl: Declaration) -> str:
    return decl.name or f"{decl.kind}@{decl.line}"


class _Declarations:
    """Which declaration of a file a position is in: the last one that starts at or before it."""

    def __init__(self, code: str) -> None:
        self.found = declarations(code)
        self.starts = [(d.line, d.column) for d in self.found]

    def index(self, pos: Pos) -> int | None:
        i = bisect.bisect_right(self.starts, (pos.line, pos.column)) - 1
        return i if i >= 0 else None


def file_steps(source: LeanSource, result: VerifyResult) -> FileSteps:
    """The steps of ``source`` from its verification ``result`` (positions in the file's own lines)."""
    out = FileSteps(source.file, source.digest)
    if result.verdict not in (Verdict.VALID, Verdict.INVALID):
        out.error = result.error or result.repl_message or "; ".join(r.message for r in result.reasons) \
            or f"no answer ({result.verdict})"
        return out
    code = source.code or ""
    decls = _Declarations(code)
    broken: set[int] = set()
    for message in result.messages:
        if not message.is_error:
            continue
        where = decls.index(message.pos) if message.pos.line else None
        if where is None:  # an error outside every declaration (the header's, say): nothing here can be trusted
            first = message.data.splitlines()[0] if message.data else "(no text)"
            out.error = f"Lean error at line {message.pos.line} outside any declaration: {first}"
            return out
        broken.add(where)
    unproved = broken | {decls.index(s.pos) for s in result.sorries if s.pos is not None}
    header = split_source(code).header
    out.problems = [ProblemRecord(source.file, decl.name, header, statement)
                    for decl, statement in standalone_statements(code)
                    if decl.name is not None and decls.index(Pos(decl.line, decl.column)) not in unproved]
    trees = [InfoTree.from_json(t) for t in result.infotree or ()]
    for step in steps_from_infotree(trees, code):
        where = decls.index(step.pos)
        if step.tactic in PLACEHOLDER_TACTICS:
            out.skipped[SKIP_PLACEHOLDER] += 1
        elif where in broken:
            out.skipped[SKIP_ERROR_DECLARATION] += 1
        else:
            decl = _declaration_name(decls.found[where]) if where is not None else None
            out.records.append(StepRecord(source.file, decl, step))
    return out


# --------------------------------------------------------------------------- #
# Output and resuming


def file_log_path(output: Path) -> Path:
    """Where the per-file log of ``output`` goes: ``steps.jsonl`` -> ``steps.files.jsonl``."""
    return output.with_name(f"{output.stem}.files.jsonl")


def problems_path(output: Path) -> Path:
    """Where the problems of ``output``'s files go: ``steps.jsonl`` -> ``steps.problems.jsonl``."""
    return output.with_name(f"{output.stem}.problems.jsonl")


def problems_of(output: Path, wanted: Collection[tuple[str, str]]) -> list[dict[str, Any]] | None:
    """The problems of the ``(file, declaration)`` pairs ``wanted``, as extracted beside ``output``, in the
    file's order; None when there is no problems file beside it."""
    path = problems_path(output)
    if not path.exists():
        return None
    return [p for p in _json_lines(path) if (p.get("file"), p.get("id")) in wanted]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line cut off by a crash (not JSON) is dropped."""
    if not path.exists():
        return []
    found = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
    return found


def _rewrite(path: Path, objects: list[dict[str, Any]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.writelines(json_line(o) for o in objects)
    os.replace(temporary, path)


def resume(output: Path, sources: list[LeanSource]) -> set[str]:
    """The files already extracted into ``output`` from the text they have now; everything else is removed
    from ``output`` and its log, so that extracting the rest completes them."""
    log_path = file_log_path(output)
    current = {s.file: s.digest for s in sources}
    entries = [e for e in _json_lines(log_path) if e.get("error") is None and isinstance(e.get("file"), str)]
    done = {e["file"] for e in entries if current.get(e["file"], e.get("sha256")) == e.get("sha256")}
    _rewrite(log_path, [e for e in entries if e["file"] in done])
    for path in (output, problems_path(output)):
        _rewrite(path, [r for r in _json_lines(path) if r.get("file") in done])
    return done


class StepWriter:
    """Appends each file's steps and problems, then its log line (so a file is in the log only once they are
    all written)."""

    def __init__(self, output: Path) -> None:
        self.steps: IO[str] = output.open("a", encoding="utf-8")
        self.problems: IO[str] = problems_path(output).open("a", encoding="utf-8")
        self.log: IO[str] = file_log_path(output).open("a", encoding="utf-8")
        self.lock = threading.Lock()
        self.totals: Counter[str] = Counter()

    def add(self, found: FileSteps) -> None:
        with self.lock:
            self.steps.writelines(json_line(r.to_json()) for r in found.records)
            self.steps.flush()
            self.problems.writelines(json_line(p.to_json()) for p in found.problems)
            self.problems.flush()
            self.log.write(json_line(found.log_entry()))
            self.log.flush()
            self.totals["files"] += 1
            self.totals["steps"] += len(found.records)
            self.totals["problems"] += len(found.problems)
            self.totals["errors"] += found.error is not None
            self.totals.update({f"skipped: {k}": v for k, v in found.skipped.items()})

    def close(self) -> None:
        self.steps.close()
        self.problems.close()
        self.log.close()


def summary_line(totals: Counter[str], elapsed: float) -> str:
    skipped = ", ".join(f"{v} {k.removeprefix('skipped: ')}" for k, v in sorted(totals.items())
                        if k.startswith("skipped: "))
    return (f"{totals['files']} files: {totals['steps']} steps" + (f" (left out: {skipped})" if skipped else "")
            + f", {totals['problems']} theorems proved, files with errors: {totals['errors']}, in {elapsed:.1f} s")


# --------------------------------------------------------------------------- #


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    try:
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        sources = read_sources(Path(args.input))
    except UsageError as exc:
        print(f"leanstep extract: {exc}", file=sys.stderr)
        return 2
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        for path in (output, file_log_path(output), problems_path(output)):
            path.unlink(missing_ok=True)
    done = resume(output, sources)
    todo = [s for s in sources if s.file not in done]
    if done:
        print(f"leanstep extract: resuming: {len(sources) - len(todo)} of {len(sources)} files already extracted",
              file=sys.stderr)
    writer = StepWriter(output)
    progress = Progress(len(todo), "file", "extract", enabled=not args.no_progress)

    def report(found: FileSteps) -> None:
        writer.add(found)
        if found.error is not None:
            progress.write(f"leanstep extract: {found.file}: {found.error}")
        progress.update(steps=writer.totals["steps"])

    started = time.monotonic()
    try:
        for source in todo:
            if source.code is None:
                report(FileSteps(source.file, source.digest, error=source.error))
        readable = [s for s in todo if s.code is not None]
        if readable:
            _extract_on_pool(args, readable, report)
    except (SetupError, ValueError) as exc:  # a configuration that cannot start a REPL, or a bad flag value
        print(f"leanstep extract: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        writer.close()
    print(summary_line(writer.totals, time.monotonic() - started), file=sys.stderr)
    return 0


def _extract_on_pool(args: argparse.Namespace, sources: list[LeanSource],
                     report: Callable[[FileSteps], None]) -> None:
    """Run ``sources`` through the verifier (a local pool, or a Ray cluster with ``--ray``) and report each file."""
    config = settings_from_args(args, POOL_SETTINGS)
    options = VerifyOptions(timeout=args.timeout if args.timeout is not None else config.timeout,
                            infotree=INFOTREE, trust=Trust.LENIENT, use_cache=False)
    snippets = [Snippet(s.file, s.code or "") for s in sources]
    with open_verifier(args, config) as verifier:
        verifier.verify_batch(snippets, options, lambda i, result: report(file_steps(sources[i], result)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leanstep extract", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
