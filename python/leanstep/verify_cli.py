"""``leanstep verify FILE.jsonl|FILE.lean|DIR``: check proofs against a server or a local pool.

Input: a ``.jsonl`` file of snippet records (``{"id", "code"}``, or the other names
``api.records`` reads: Kimina's ``custom_id``/``proof``, or ``name``/``full_proof``), one
``.lean`` file, or a directory of ``.lean`` files (searched recursively, ids are
the relative paths). With ``--url`` the proofs go to a running server, with
``--ray`` to a Ray cluster (one pool per node); otherwise a local pool is
started (``--repl sim|lake``). Results are written as
JSON lines in input order (to ``--output`` or stdout), with a progress bar and
a summary line on stderr. For pass@k, ``--first-valid`` stops checking a
problem's samples (records with the same ``group`` or ``problem_id``) after one
is valid; the later ones are written with verdict ``skipped``.

Exit status:

- 0: every proof was checked, whatever its verdict (an invalid proof is a result, not a failure; so is a
  ``skipped`` one, which ``--first-valid`` asked for).
- 1: some proofs were not checked: the server could not be reached, kept failing
  after ``--retries``, or refused the requests (401 for a missing or wrong
  ``--api-key``); or a local check lost a result. Those proofs are still written,
  with verdict ``error``, and one line on stderr says why.
- 2: a usage error: bad input, a bad flag value, or a local pool that cannot start.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from leanstep import config as config_mod
from leanstep.api.records import json_line, json_objects, result_record, snippet_from_record
from leanstep.check.trust import checks_from_config
from leanstep.check.verdict import Trust
from leanstep.check.verify import VERDICTS, BatchVerifier, Snippet, Verifier, VerifyOptions, VerifyResult
from leanstep.cli import add_ray_arguments, ray_target
from leanstep.progress import Progress
from leanstep.repl.launch import SetupError, make_pool

if TYPE_CHECKING:
    from leanstep.client import RequestFailure

# The pool flags of `leanstep verify`: a local pool's, or each node's with --ray.
POOL_SETTINGS = ("repl", "workspace", "max_repls", "sandbox", "import_timeout")


class UsageError(ValueError):
    """Bad input or arguments; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input",
                        help="a .jsonl file ({id, code} per line), a .lean file, or a directory of .lean files")
    parser.add_argument("--url", default=None, help="verify on this running server instead of a local pool")
    parser.add_argument("--api-key", default=None, help="API key for --url (default: $LEANSTEP_API_KEY)")
    parser.add_argument("-o", "--output", default=None, help="write JSON-lines results here (default: stdout)")
    parser.add_argument("--timeout", type=float, default=None, help="wall-clock seconds per proof (default: 60)")
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                        help="the same as --trust strict (--no-strict: --trust lenient)")
    parser.add_argument("--infotree", default=None, choices=["full", "tactics", "original", "substantive"],
                        help="include the REPL's infotree in each result")
    parser.add_argument("--no-cache", action="store_true", help="check duplicates again instead of reusing results")
    parser.add_argument("--first-valid", action="store_true",
                        help="first valid wins: once one snippet of a group (the records' `group` or `problem_id`) "
                             "is valid, skip its later snippets not yet started (pass@k; RL rewards need all)")
    parser.add_argument("--batch-size", type=int, default=32, help="snippets per HTTP request with --url")
    parser.add_argument("--max-workers", type=int, default=4, help="concurrent HTTP requests with --url")
    parser.add_argument("--retries", type=int, default=5,
                        help="retries of a batch on a connection error, 429 or 5xx with --url, with backoff")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    trust = parser.add_argument_group("trust (docs/verdicts.md)")
    config_mod.add_arguments(trust, ("server",), names=config_mod.TRUST_SETTINGS)
    pool = parser.add_argument_group("REPL pool (without --url: a local one, or one per node with --ray)")
    config_mod.add_arguments(pool, ("pool",), names=POOL_SETTINGS)
    add_ray_arguments(parser)


# --------------------------------------------------------------------------- #
# Input


def read_snippets(path: Path) -> list[Snippet]:
    """Snippets from a .jsonl file, a .lean file or a directory of .lean files."""
    if path.is_dir():
        return [Snippet(str(f.relative_to(path)), _read_text(f)) for f in lean_files(path)]
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.suffix == ".lean":
        return [Snippet(path.name, _read_text(path))]
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path)
    raise UsageError(f"{path}: expected a .jsonl file, a .lean file or a directory")


def lean_files(directory: Path) -> list[Path]:
    """The .lean files under ``directory``, sorted, outside Lake's build folders (``.lake``)."""
    files = sorted(p for p in directory.rglob("*.lean") if p.is_file() and ".lake" not in p.parts)
    if not files:
        raise UsageError(f"{directory}: no .lean files in this directory")
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc})") from None


def _read_jsonl(path: Path) -> list[Snippet]:
    return read_records(path, snippet_from_record, "snippets", "`id` and `code`")


RecordT = TypeVar("RecordT")


def read_records(path: Path, parse: Callable[[dict[str, Any], int], RecordT], what: str,
                 fields: str) -> list[RecordT]:
    """One ``parse(object, line number)`` per non-blank JSON line of ``path``; a :class:`UsageError` names the
    file and line of the first bad one (``what``: the records' name, ``fields``: what each must hold)."""
    try:
        records = [_parsed(path, lineno, obj, parse)
                   for lineno, obj in json_objects(path, f"a JSON object with {fields}")]
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not records:
        raise UsageError(f"{path}: no {what}")
    return records


def _parsed(path: Path, lineno: int, record: dict[str, Any],
            parse: Callable[[dict[str, Any], int], RecordT]) -> RecordT:
    try:
        return parse(record, lineno)
    except ValueError as exc:
        raise UsageError(f"{path}:{lineno}: {exc}") from None


# --------------------------------------------------------------------------- #
# Output


class OrderedWriter:
    """Writes results as JSON lines in input order as soon as every earlier one is in."""

    def __init__(self, out: IO[str], total: int) -> None:
        self.out = out
        self.pending: dict[int, VerifyResult] = {}
        self.next = 0
        self.total = total
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def add(self, index: int, result: VerifyResult) -> None:
        with self.lock:
            self.counts[result.verdict] += 1
            self.pending[index] = result
            while self.next in self.pending:
                item = self.pending.pop(self.next)
                self.out.write(json_line(result_record(item)))
                self.next += 1
            self.out.flush()


def summary_line(counts: Counter[str], total: int, elapsed: float) -> str:
    parts = " / ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    rate = total / elapsed if elapsed > 0 else 0.0
    return f"{total} proofs: {parts} in {elapsed:.1f} s ({rate:.1f} proofs/s)"


# --------------------------------------------------------------------------- #


def _run_on_pools(args: argparse.Namespace, snippets: list[Snippet],
                  on_result: Callable[[int, VerifyResult], None]) -> None:
    """Verify on a local pool, or with ``--ray`` on one per node: the same flags and options either way."""
    config = settings_from_args(args, (*POOL_SETTINGS, *config_mod.TRUST_SETTINGS))
    timeout = args.timeout if args.timeout is not None else config.timeout
    options = VerifyOptions(timeout=timeout, infotree=args.infotree, trust=requested_trust(args) or config.trust,
                            use_cache=not args.no_cache, first_valid=args.first_valid)
    with open_verifier(args, config) as verifier:
        verifier.verify_batch(snippets, options, on_result)


def settings_from_args(args: argparse.Namespace, names: tuple[str, ...]) -> config_mod.Config:
    """The configuration with the settings ``names`` that ``args`` gives (the rest: env vars, defaults)."""
    return config_mod.load({k: getattr(args, k) for k in names if getattr(args, k, None) is not None})


def requested_trust(args: argparse.Namespace) -> Trust | None:
    """``--trust``, or ``--strict``/``--no-strict`` (strict/lenient); None: neither, so the configured default."""
    trust = getattr(args, "trust", None)
    if isinstance(trust, str):
        try:
            trust = config_mod.parse_enum(Trust, trust, "--trust")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.strict is None:
        return trust
    alias = Trust.STRICT if args.strict else Trust.LENIENT
    if trust is not None and trust is not alias:
        raise UsageError(f"--{'' if args.strict else 'no-'}strict means --trust {alias}, but --trust {trust} was given")
    return alias


@contextmanager
def open_verifier(args: argparse.Namespace, config: config_mod.Config) -> Iterator[BatchVerifier]:
    """The cluster verifier ``--ray`` names, or a verifier on a local pool; stopped on exit."""
    target = ray_target(args)
    if target is not None:
        from leanstep.cluster.router import make_verifier

        with make_verifier(target, config) as cluster:
            yield cluster
        return
    pool = make_pool(config)
    pool.start()
    try:
        with Verifier(pool, cache_size=config.cache_size, checks=checks_from_config(config)) as verifier:
            yield verifier
    finally:
        pool.shutdown()


def _run_remote(args: argparse.Namespace, snippets: list[Snippet], writer: OrderedWriter,
                progress: Progress) -> list[RequestFailure]:
    """Verify on the server at ``args.url``; returns the batches it never checked."""
    import os

    from leanstep.client import Client

    key = args.api_key or os.environ.get("LEANSTEP_API_KEY")
    client = Client(args.url, api_key=key, max_retries=args.retries)
    failures: list[RequestFailure] = []

    def on_batch(results: list[VerifyResult]) -> None:
        progress.update(len(results))

    with client:
        # duplicate ids are fine on the client: it sends its own wire ids
        results = client.verify(snippets, timeout=args.timeout or 60.0, batch_size=args.batch_size,
                                max_workers=args.max_workers, strict=args.strict, infotree=args.infotree,
                                reuse=not args.no_cache, first_valid=args.first_valid, on_batch=on_batch,
                                on_failure=failures.append)
    for i, result in enumerate(results):
        writer.add(i, result)
    return failures


def run(args: argparse.Namespace) -> int:
    try:
        if args.batch_size <= 0 or args.max_workers <= 0:
            raise UsageError("--batch-size and --max-workers must be positive")
        if args.retries < 0:
            raise UsageError("--retries must be 0 or more")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        snippets = read_snippets(Path(args.input))
    except UsageError as exc:
        print(f"leanstep verify: {exc}", file=sys.stderr)
        return 2
    out: IO[str]
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115 - closed below
    writer = OrderedWriter(out, len(snippets))
    progress = Progress(len(snippets), "proof", "verify", enabled=not args.no_progress)

    def on_result(index: int, result: VerifyResult) -> None:
        writer.add(index, result)
        progress.update()

    started = time.monotonic()
    failures: list[RequestFailure] = []
    try:
        if args.url:
            failures = _run_remote(args, snippets, writer, progress)
        else:
            _run_on_pools(args, snippets, on_result)
    except ConnectionError as exc:
        print(f"leanstep verify: {exc}", file=sys.stderr)
        return 1
    except (SetupError, ValueError) as exc:  # a configuration that cannot start a REPL, or a bad flag value
        print(f"leanstep verify: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
    print(summary_line(writer.counts, len(snippets), time.monotonic() - started), file=sys.stderr)
    if failures:
        unchecked = sum(f.snippets for f in failures)
        print(f"leanstep verify: {unchecked} of {len(snippets)} proofs were not checked: {failures[0].error}",
              file=sys.stderr)
        return 1
    return 0 if writer.next == len(snippets) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leanstep verify", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
