"""Whole-proof verification: run a snippet on its header's warm env and give an honest verdict.

A snippet is split into header and body (``check.source``); the body runs on the
pristine env of a worker whose header is the snippet's (never on top of another
snippet), and the REPL's answer becomes a :class:`VerifyResult` in the user's own
line numbers. The verdict (DESIGN §3.3):

* ``valid``: no error-severity message, no sorry (reported sorry or the
  ``declaration uses 'sorry'`` warning), and in strict mode every declared
  theorem/def depends only on ``propext``, ``Classical.choice``, ``Quot.sound``
  and the snippet declares no ``axiom``;
* ``invalid``: Lean rejected the proof (the ``reasons`` say why);
* ``timeout``: the wall-clock limit was hit (the REPL was killed and replaced),
  for the proof (``VerifyOptions.timeout``; the reason says whose limit that
  was) or for the import of its header (the pool's ``import_timeout``);
* ``error``: no verdict could be reached (lost REPL, overload, the restart
  budget spent, REPL-level failure, input that cannot be sent, or the server
  shutting down: every check still running when the pool shuts down is
  answered ``server shutting down``);
* ``skipped``: not checked, because the batch asked for "first valid wins"
  (``VerifyOptions.first_valid``) and an earlier snippet of its ``group`` was
  valid before this one's check started, or because the batch's deadline
  (``VerifyOptions.deadline``) came first.

Batches fan out over a bounded thread pool that takes concurrent batches in
turn (one check of each, then the next of each), are de-duplicated before dispatch,
and answered from an LRU result cache across batches; only definitive verdicts
(valid/invalid) are cached. That front (``Deduplicator``) is the same for the
local ``Verifier`` and the Ray router, which both implement ``BatchVerifier``;
what runs the checks (``PoolChecker``, on a pool) sees distinct snippets only.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import leanstep.check.verdict as codes
from leanstep.check.policy import SourcePolicy, early_exits
from leanstep.check.source import SourceSplit, declarations, line_count, split_source
from leanstep.check.statement import Statement, StatementError, new_nonce, parse_statement, text_mismatch
from leanstep.check.verdict import Reason, Trust, Verdict
from leanstep.lru import LruCache
from leanstep.repl.pool import (
    IMPORT_TIMEOUT_ORIGIN,
    HeaderImportTimeout,
    ImportLimit,
    PoolClosed,
    PoolOverloaded,
    Priority,
    ReplPool,
    RestartLimited,
)
from leanstep.repl.process import ReplError, ReplLost, ReplTimeout
from leanstep.repl.protocol import (
    INFOTREE_KINDS,
    CommandRequest,
    CommandResponse,
    ErrorResponse,
    Message,
    Pos,
    ProtocolError,
    Sorry,
)

log = logging.getLogger(__name__)

VALID, INVALID, ERROR, TIMEOUT = Verdict.VALID, Verdict.INVALID, Verdict.ERROR, Verdict.TIMEOUT
SKIPPED = Verdict.SKIPPED
VERDICTS = tuple(Verdict)
ALLOWED_AXIOMS = frozenset({"propext", "Classical.choice", "Quot.sound"})
NATIVE_AXIOMS = frozenset({"Lean.ofReduceBool", "Lean.ofReduceNat", "Lean.trustCompiler"})
AUDITED_KINDS = frozenset({"theorem", "lemma", "def", "abbrev", "instance", "opaque", "example"})
PROOF_KINDS = AUDITED_KINDS  # a snippet that declares none of these has nothing to check
_SORRY_WARNING = re.compile(r"declaration uses ['`]sorry['`]")
_AXIOMS_LINE = re.compile(
    r"^'(?P<name>.+)' (?:depends on axioms: \[(?P<axioms>[^\]]*)\]|does not depend on any axioms)", re.DOTALL)
EXAMPLE_PREFIX = "leanstep_example_"
SHUTTING_DOWN = "server shutting down"
MIN_CHECK_SECONDS = 0.5  # with a deadline, a check with less time than this left is not started


# --------------------------------------------------------------------------- #
# Inputs and results


@dataclass(frozen=True)
class Snippet:
    """A submission: its id, its Lean code, optionally the formal statement it had to prove, and the
    ``group`` it belongs to (the problem it is a sample of: "first valid wins" works per group)."""

    id: str
    code: str
    statement: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class VerifyOptions:
    """How to check; ``timeout`` is wall-clock seconds per REPL command.

    ``timeout_origin``: whose limit ``timeout`` is, in words, for the reason of a
    timeout (the server says when it capped the client's value).

    ``deadline``: a ``time.monotonic()`` value of this process (a caller's budget, as
    the prover's; not on the wire). No check starts with less than
    ``MIN_CHECK_SECONDS`` left before it (those are answered ``skipped``, reason
    ``deadline``), and one that starts gets at most the time left as its timeout.
    """

    timeout: float = 60.0
    timeout_origin: str = "wall-clock limit"
    infotree: str | None = None
    trust: Trust = Trust.STRICT
    use_cache: bool = True  # False: no result cache and no de-duplication (Kimina's disable_cache / reuse=false)
    debug: bool = False  # record per-snippet diagnostics (worker name, RSS)
    first_valid: bool = False  # once a snippet of a group is valid, its later unstarted snippets are `skipped`
    deadline: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.infotree is not None and self.infotree not in INFOTREE_KINDS:
            raise ValueError(f"infotree must be one of {', '.join(INFOTREE_KINDS)} or null, got {self.infotree!r}")
        if not isinstance(self.trust, Trust):
            raise ValueError(  # noqa: TRY004 - one error type for every bad option, as the API layer expects
                f"trust must be one of {', '.join(t.value for t in Trust)}, got {self.trust!r}")

    @property
    def strict(self) -> bool:
        """Whether the checks of ``strict`` (and so of ``sealed``) run."""
        return self.trust.rank >= Trust.STRICT.rank

    def within_deadline(self) -> VerifyOptions:
        """The options of a check that starts now: ``timeout`` cut to the time left before ``deadline``, and no
        deadline (what a check runs with, here or on a cluster node, whose clock is not this one)."""
        if self.deadline is None:
            return self
        left = self.deadline - time.monotonic()
        if left >= self.timeout:
            return replace(self, deadline=None)
        return replace(self, timeout=max(left, 0.001), deadline=None, timeout_origin="the time left before the "
                                                                                    "deadline of its batch")


@dataclass(frozen=True)
class VerifyResult:
    """One snippet's answer; positions are in the user's own lines."""

    id: str
    verdict: Verdict
    messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    time: float = 0.0  # wall seconds of the REPL commands for this snippet (0 when none ran)
    error: str | None = None  # server-level failure: timeout, lost REPL, overload, bad input
    repl_message: str | None = None  # the REPL's own {"message": ...} answer, if it gave one
    env: int | None = None
    infotree: list[Any] | None = None
    axioms: dict[str, list[str]] | None = None  # strict and sealed: axioms of each audited declaration
    reasons: tuple[Reason, ...] = ()  # why the verdict is not `valid`
    cached: bool = False
    diagnostics: dict[str, Any] | None = None
    trust: Trust | None = None  # the level it was checked at (None: not checked, e.g. unreadable input)

    @property
    def ok(self) -> bool:
        return self.verdict == VALID


# --------------------------------------------------------------------------- #
# The outcome of one run, in body/header coordinates (what the cache keeps)


@dataclass(frozen=True)
class Outcome:
    """What one check found, in the header's and the body's own lines.

    The result cache keeps these and a cluster node sends them back, so one check serves every
    snippet with the same header and body, however its text places them (see ``BatchPlan``).
    """

    verdict: Verdict
    body_messages: tuple[Message, ...] = ()
    header_messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    time: float = 0.0
    error: str | None = None
    repl_message: str | None = None
    env: int | None = None
    infotree: list[Any] | None = None
    axioms: dict[str, list[str]] | None = None
    reasons: tuple[Reason, ...] = ()  # positions in body lines
    diagnostics: dict[str, Any] | None = None
    trust: Trust | None = None
    header_reasons: tuple[Reason, ...] = ()  # the source policy's findings in the header, in header lines

    @property
    def cacheable(self) -> bool:
        return self.verdict in (VALID, INVALID) and self.error is None


def _failure(verdict: Verdict, code: str, error: str, elapsed: float = 0.0,
             diagnostics: dict[str, Any] | None = None) -> Outcome:
    return Outcome(verdict, time=elapsed, error=error, reasons=(Reason(code, error),), diagnostics=diagnostics)


def _shift_pos(pos: Pos | None, map_line: Callable[[int], int]) -> Pos | None:
    return None if pos is None else Pos(map_line(pos.line), pos.column)


def _shift_message(m: Message, map_line: Callable[[int], int]) -> Message:
    if m.pos.line == 0:  # no source position
        return m
    return Message(m.severity, Pos(map_line(m.pos.line), m.pos.column), _shift_pos(m.end_pos, map_line), m.data)


def _shift_sorry(s: Sorry, map_line: Callable[[int], int]) -> Sorry:
    return Sorry(s.goal, s.proof_state, _shift_pos(s.pos, map_line), _shift_pos(s.end_pos, map_line))


def _shift_tree(node: Any, offset: int) -> Any:
    """Copy of an infotree JSON value with every ``range`` start/finish line shifted by ``offset``."""
    if isinstance(node, list):
        return [_shift_tree(x, offset) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "range" and isinstance(value, dict):
            shifted = dict(value)
            for end in ("start", "finish"):
                p = shifted.get(end)
                if isinstance(p, dict) and isinstance(p.get("line"), int):
                    shifted[end] = {**p, "line": p["line"] + offset}
            out[key] = shifted
        else:
            out[key] = _shift_tree(value, offset)
    return out


def _to_user(outcome: Outcome, split: SourceSplit, snippet_id: str, cached: bool) -> VerifyResult:
    offset = split.line_offset

    def body_line(line: int) -> int:
        return line + offset

    messages = tuple(_shift_message(m, split.user_header_line) for m in outcome.header_messages) + \
        tuple(_shift_message(m, body_line) for m in outcome.body_messages)
    sorries = tuple(_shift_sorry(s, body_line) for s in outcome.sorries)
    reasons = tuple(replace(r, pos=_shift_pos(r.pos, split.user_header_line)) for r in outcome.header_reasons) + \
        tuple(replace(r, pos=_shift_pos(r.pos, body_line)) for r in outcome.reasons)
    tree = None if outcome.infotree is None else (_shift_tree(outcome.infotree, offset) if offset else outcome.infotree)
    return VerifyResult(
        id=snippet_id, verdict=outcome.verdict, messages=messages, sorries=sorries, time=outcome.time,
        error=outcome.error, repl_message=outcome.repl_message, env=outcome.env, infotree=tree,
        axioms=outcome.axioms, reasons=reasons, cached=cached, diagnostics=outcome.diagnostics, trust=outcome.trust,
    )


# --------------------------------------------------------------------------- #
# The verdict


def judge(messages: Iterable[Message], sorries: Sequence[Sorry]) -> list[Reason]:
    """Reasons a command response is not a valid proof (empty: valid)."""
    reasons: list[Reason] = []
    messages = list(messages)
    errors = [m for m in messages if m.is_error]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        text = first.data.splitlines()[0] if first.data else "(no text)"
        reasons.append(Reason(codes.LEAN_ERROR, f"{text}{more}", first.pos if first.pos.line else None))
    warnings = [m for m in messages if m.severity == "warning" and _SORRY_WARNING.search(m.data)]
    if sorries or warnings:
        where = sorries[0].pos if sorries else warnings[0].pos
        reasons.append(Reason(codes.USES_SORRY, "the proof uses sorry", where))
    return reasons


def parse_axioms(data: str) -> tuple[str, list[str]] | None:
    """Parse a ``#print axioms`` answer: (name, axioms), or None when it is something else."""
    m = _AXIOMS_LINE.match(data.strip())
    if not m:
        return None
    listed = m.group("axioms")
    axioms = [a.strip() for a in listed.replace("\n", " ").split(",") if a.strip()] if listed else []
    return m.group("name"), axioms


@dataclass(frozen=True)
class _AuditPlan:
    command: str  # sent to the REPL
    on_header_env: bool  # True: run on the header env (examples renamed); False: on the body's env
    lines: dict[int, str]  # line of each `#print axioms` in `command` -> the user's name for it


def plan_audit(body: str) -> _AuditPlan | None:
    """The `#print axioms` commands that audit every declaration of ``body`` (None: nothing to audit).

    Named declarations are audited in the env the body produced, by their full
    names under ``_root_`` (so a namespace the body left open cannot redirect
    them). An ``example`` has no name, so when there is one the body is re-run
    with each ``example`` keyword replaced by ``noncomputable def
    leanstep_example_N`` (examples are anonymous defs) and the audit runs on
    that copy instead.
    """
    decls = declarations(body)
    audited = [d for d in decls if d.kind in AUDITED_KINDS and (d.name or d.kind == "example")]
    if not audited:
        return None
    examples = [d for d in audited if d.kind == "example"]
    names: list[tuple[str, str]] = []  # (name to print, name to report)
    text = body
    if examples:
        lines = body.split("\n")
        counter = 0
        for d in audited:
            if d.kind == "example":
                counter += 1
                alias = f"{EXAMPLE_PREFIX}{counter}"
                line = lines[d.line - 1]
                # the keyword is at d.column; `example` is 7 code points long
                lines[d.line - 1] = line[: d.column] + f"noncomputable def {alias}" + line[d.column + 7:]
                printed = f"{d.namespace}.{alias}" if d.namespace else alias
                names.append((printed, f"example@{d.line}"))
            else:
                names.append((d.name or "", d.name or ""))
        text = "\n".join(lines)
    else:
        names = [(d.name or "", d.name or "") for d in audited]
    prints = [f"#print axioms _root_.{printed}" for printed, _ in names]
    if examples:
        sep = "" if text.endswith("\n") else "\n"
        command = text + sep + "\n".join(prints)
        first_line = line_count(text) + 1
    else:
        command = "\n".join(prints)
        first_line = 1
    line_map = {first_line + k: reported for k, (_, reported) in enumerate(names)}
    return _AuditPlan(command, bool(examples), line_map)


def _read_audit(plan: _AuditPlan, response: CommandResponse) -> tuple[dict[str, list[str]], list[str]]:
    """Axioms per declaration, and the names whose audit failed."""
    axioms: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for m in response.messages:
        name = plan.lines.get(m.pos.line)
        if name is None:
            continue
        parsed = parse_axioms(m.data) if m.severity == "info" else None
        if parsed is None:
            if m.is_error:
                failed.setdefault(name, m.data.splitlines()[0] if m.data else "error")
            continue
        axioms[name] = parsed[1]
    missing = [name for name in plan.lines.values() if name not in axioms]
    return axioms, [f"{n}: {failed.get(n, 'no answer')}" for n in missing]


# --------------------------------------------------------------------------- #
# The result cache


@dataclass(frozen=True)
class CacheStats:
    """A result cache's size and counters (``/health``'s ``cache``, the ``leanstep_cache_*`` metrics)."""

    entries: int
    max_entries: int
    hits: int  # distinct snippets answered from the cache
    misses: int  # look-ups that found nothing usable
    batch_duplicates: int  # snippets answered by an identical one of the same batch


class ResultCache:
    """Bounded LRU of definitive outcomes keyed by (header, body, options); thread-safe.

    Only outcomes that are ``cacheable`` are kept: timeouts and infrastructure errors are not.
    """

    def __init__(self, max_entries: int = 10000) -> None:
        self._data: LruCache[str, Outcome] = LruCache(max_entries)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.batch_duplicates = 0

    @property
    def max_entries(self) -> int:
        return self._data.capacity

    @staticmethod
    def key(header: str, body: str, options: VerifyOptions, statement: str | None = None) -> str:
        """SHA-256 of the parts that decide an outcome, each length-prefixed (``-`` for none), so no two differ."""
        digest = hashlib.sha256()
        for part in (header, body, options.infotree, options.trust.value, statement):
            data = b"-" if part is None else part.encode("utf-8", "surrogatepass")
            digest.update(b"%d:" % (-1 if part is None else len(data)))
            digest.update(data)
        return digest.hexdigest()

    def get(self, key: str, timeout: float) -> Outcome | None:
        """A cached outcome that finished within ``timeout`` (else it could have timed out now)."""
        if not self.max_entries:
            return None
        with self._lock:
            outcome = self._data.peek(key)
            if outcome is None or outcome.time > timeout:
                self.misses += 1
                return None
            self._data.touch(key)
            self.hits += 1
            return outcome

    def put(self, key: str, outcome: Outcome) -> None:
        if not outcome.cacheable:
            return
        with self._lock:
            self._data.put(key, outcome)

    def note_duplicates(self, count: int) -> None:
        with self._lock:
            self.batch_duplicates += count

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(entries=len(self._data), max_entries=self.max_entries, hits=self.hits,
                              misses=self.misses, batch_duplicates=self.batch_duplicates)


# --------------------------------------------------------------------------- #
# Running one snippet


class SealedCheck(Protocol):
    """The ``sealed`` level's kernel re-check outside the elaborator (``leanstep.check.sealed.SealedChecker``)."""

    def unavailable(self) -> str | None:
        """Why it cannot run (a missing tool), or None."""
        ...

    def check(self, header: str, body: str, names: Sequence[str], timeout: float) -> RecheckReport:
        ...


class RecheckReport(Protocol):
    """What a sealed re-check found (``leanstep.check.sealed.SealedReport``)."""

    @property
    def axioms(self) -> dict[str, list[str]]: ...

    @property
    def error(self) -> str | None:
        """The re-check could not run to the end (a tool crashed or timed out)."""
        ...

    @property
    def rejected(self) -> str | None:
        """The compiler or the kernel re-check rejected the module."""
        ...

    @property
    def time(self) -> float: ...


@dataclass(frozen=True)
class Submission:
    """One distinct check: the split source and, when the snippet carries one, the statement it must prove."""

    split: SourceSplit
    statement: str | None = None


@dataclass(frozen=True)
class Checks:
    """What a checker applies besides Lean: the strict level's source policy and the sealed re-check."""

    policy: SourcePolicy = field(default_factory=SourcePolicy)
    sealed: SealedCheck | None = None
    allow_native: bool = False  # Lean.ofReduceBool (native_decide) passes the axiom audit

    @property
    def allowed_axioms(self) -> frozenset[str]:
        return ALLOWED_AXIOMS | NATIVE_AXIOMS if self.allow_native else ALLOWED_AXIOMS


def _validate_text(text: str) -> str | None:
    """Why ``text`` cannot be sent to a REPL, or None."""
    try:
        CommandRequest(text, env=0)
    except ProtocolError as exc:
        return str(exc).replace("cmd ", "code ", 1)
    return None


@dataclass(frozen=True)
class Screening:
    """What is known before any REPL runs: reasons to reject, the statement to check by Lean, and (strict) the
    axiom audit's commands, planned here so that no REPL waits for it."""

    reasons: tuple[Reason, ...]  # in body lines
    header_reasons: tuple[Reason, ...]  # in header lines
    statement: Statement | None
    failure: Outcome | None = None  # no verdict can be reached (an unreadable statement)
    audit: _AuditPlan | None = None

    @property
    def rejected(self) -> bool:
        return bool(self.reasons or self.header_reasons)


def screen(submission: Submission, options: VerifyOptions, checks: Checks) -> Screening:
    """The text-only rules (cheap, before any REPL): nothing to check, ``#exit``, the strict policy, the statement."""
    split = submission.split
    reasons: list[Reason] = []
    header_reasons: list[Reason] = []
    if not any(d.kind in PROOF_KINDS for d in declarations(split.body)):
        reasons.append(Reason(codes.NOTHING_TO_CHECK, "the snippet declares no theorem, lemma, example or "
                                                      "definition: there is nothing to check"))
    if options.strict:
        reasons += [v.reason() for v in checks.policy.violations(split.body)]
        header_reasons += [v.reason() for v in checks.policy.violations(split.header)]
    else:
        reasons += [v.reason() for v in early_exits(split.body)]
    statement = None
    if submission.statement is not None:
        try:
            statement = parse_statement(submission.statement)
        except StatementError as exc:
            message = f"the statement cannot be read: {exc}"
            return Screening((), (), None, _failure(ERROR, codes.STATEMENT_UNREADABLE, message))
        mismatch = text_mismatch(split.body, statement)
        if mismatch is not None:
            reasons.append(Reason(codes.STATEMENT_MISMATCH, mismatch))
    audit = plan_audit(split.body) if options.strict and not reasons and not header_reasons else None
    return Screening(tuple(reasons), tuple(header_reasons), statement, audit=audit)


@dataclass(frozen=True)
class GroupGate:
    """One check's part in "first valid wins" (``VerifyOptions.first_valid``) and in its batch's deadline.

    ``skipped()`` may give the answer instead of the check: it is asked before the check takes a REPL and
    again once it holds one (a wait for a REPL can be long). ``solved()`` is told when the REPL found the
    snippet valid, before that REPL is released, so a later sibling that takes it next is already skipped.
    """

    skipped: Callable[[], Outcome | None]
    solved: Callable[[], None]


def _run(pool: ReplPool, submission: Submission, options: VerifyOptions, priority: Priority,
         checks: Checks, gate: GroupGate | None = None) -> Outcome:
    """Run one submission; every failure becomes an outcome, never an exception."""
    skipped = gate.skipped() if gate is not None else None
    if skipped is not None:
        return skipped
    asked, options = options, options.within_deadline()  # the header's import too ends by the deadline
    split = submission.split
    problem = _validate_text(split.body) or _validate_text(split.header)
    if problem is not None:
        return _failure(ERROR, codes.INVALID_SNIPPET, f"invalid snippet: {problem}")
    if options.trust is Trust.SEALED:
        why = "no kernel re-checker is configured" if checks.sealed is None else checks.sealed.unavailable()
        if why is not None:
            return _failure(ERROR, codes.SEALED_UNAVAILABLE, f"sealed checking unavailable: {why}")
    screening = screen(submission, options, checks)
    if screening.failure is not None:
        return screening.failure
    started = time.monotonic()
    try:
        acquired = pool.acquire(split.header, priority,
                                import_limit=ImportLimit(options.timeout, options.timeout_origin))
        worker = acquired.__enter__()
    except RestartLimited as exc:
        return _failure(ERROR, codes.RESTART_LIMITED, f"REPL restart limit reached: {exc}")
    except PoolOverloaded as exc:
        return _failure(ERROR, codes.OVERLOADED, f"overloaded: {exc}")
    except PoolClosed:
        return _failure(ERROR, codes.SHUTTING_DOWN, f"{SHUTTING_DOWN}: the check had not started")
    except ReplError as exc:
        if pool.closed:
            return _failure(ERROR, codes.SHUTTING_DOWN,
                            f"{SHUTTING_DOWN}: the REPL for this header was stopped while it started")
        if isinstance(exc, HeaderImportTimeout):
            whose = "the server's --import-timeout" if exc.origin == IMPORT_TIMEOUT_ORIGIN else exc.origin
            return _failure(TIMEOUT, codes.HEADER_TIMEOUT,
                            f"header import timed out in {exc.limit:g} seconds ({whose}; the REPL was killed "
                            "and replaced; the proof was not checked)", time.monotonic() - started,
                            {"repl_uuid": exc.worker})
        return _failure(ERROR, codes.REPL_ERROR, f"could not start a REPL for this header: {exc}")
    skipped = gate.skipped() if gate is not None else None
    if skipped is not None:
        acquired.__exit__(None, None, None)
        return skipped
    options = asked.within_deadline()  # the wait for a REPL took some of the time left
    try:
        outcome = _Run(worker, split, options, checks, screening).outcome()
    except BaseException as exc:
        acquired.__exit__(type(exc), exc, exc.__traceback__)
        if isinstance(exc, Exception):
            log.exception("verification failed unexpectedly")
            return _failure(ERROR, codes.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}",
                            time.monotonic() - started)
        raise
    if gate is not None and outcome.verdict == VALID and options.trust is not Trust.SEALED:
        gate.solved()
    acquired.__exit__(None, None, None)
    if outcome.verdict == ERROR and outcome.error is not None and pool.closed:
        return _failure(ERROR, codes.SHUTTING_DOWN, f"{SHUTTING_DOWN}: the check was stopped before it finished",
                        outcome.time)
    if outcome.verdict == VALID and options.trust is Trust.SEALED and checks.sealed is not None:
        return _sealed(checks, split, options, outcome)
    return replace(outcome, trust=options.trust)


def _sealed(checks: Checks, split: SourceSplit, options: VerifyOptions, outcome: Outcome) -> Outcome:
    """The kernel re-check of a snippet the REPL found valid; its axioms replace the audit's."""
    assert checks.sealed is not None
    names = [d.name for d in declarations(split.body) if d.kind in AUDITED_KINDS and d.name]
    report = checks.sealed.check(split.header, split.body, names, options.timeout)
    elapsed = outcome.time + report.time
    if report.error is not None:
        return replace(outcome, verdict=ERROR, time=elapsed, error=report.error, trust=options.trust,
                       reasons=(Reason(codes.SEALED_UNAVAILABLE, f"sealed re-check failed: {report.error}"),))
    if report.rejected is not None:
        return replace(outcome, verdict=INVALID, time=elapsed, trust=options.trust,
                       reasons=(Reason(codes.SEALED_REJECTED, report.rejected),))
    reasons = _axiom_reasons(report.axioms, checks.allowed_axioms)
    examples = {k: v for k, v in (outcome.axioms or {}).items() if k.startswith("example@")}  # no name to load
    return replace(outcome, verdict=INVALID if reasons else VALID, time=elapsed,
                   axioms={**examples, **report.axioms}, reasons=tuple(reasons), trust=options.trust)


def _axiom_reasons(axioms: dict[str, list[str]], allowed: frozenset[str]) -> list[Reason]:
    reasons = []
    for name, used in axioms.items():
        bad = [a for a in used if a not in allowed]
        if bad:
            reasons.append(Reason(codes.DISALLOWED_AXIOM, f"{name} depends on disallowed axioms: {', '.join(bad)}"))
    return reasons


class _Failed(Exception):
    """A REPL command of the check failed: ``outcome`` is the answer."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class _Run:
    """One submission on one worker: the reference statement (strict), the body, then the audits.

    Each REPL command is timed into ``elapsed``; a timeout or a lost REPL ends the run with that
    outcome (``_Failed``), with the diagnostics gathered so far.
    """

    def __init__(self, worker: Any, split: SourceSplit, options: VerifyOptions, checks: Checks,
                 screening: Screening) -> None:
        self.worker = worker
        self.split = split
        self.options = options
        self.checks = checks
        self.screening = screening
        self.elapsed = 0.0
        # always kept (a cached answer or a timeout can then name its REPL); shown only when debug asks
        self.diagnostics: dict[str, Any] = {"repl_uuid": worker.name}

    def command(self, text: str, env: int | None, during: str, infotree: str | None = None) -> Any:
        t0 = time.monotonic()
        try:
            return self.worker.run(CommandRequest(text, env=env, infotree=infotree), self.options.timeout)
        except ReplTimeout as exc:
            raise _Failed(_failure(TIMEOUT, codes.TIMEOUT,
                                   f"Lean REPL command timed out in {exc.limit:g} seconds{during} "
                                   f"({self.options.timeout_origin}; the REPL was killed and replaced)",
                                   self.elapsed + time.monotonic() - t0, self.diagnostics)) from None
        except ReplLost as exc:
            raise _Failed(_failure(ERROR, codes.REPL_LOST,
                                   f"REPL process lost{during or ' while checking this snippet'}: {exc} "
                                   "(it was replaced)", self.elapsed + time.monotonic() - t0,
                                   self.diagnostics)) from None
        finally:
            self.elapsed += time.monotonic() - t0

    def outcome(self) -> Outcome:
        try:
            return self._outcome()
        except _Failed as failed:
            return failed.outcome

    def _outcome(self) -> Outcome:
        worker, options, screening = self.worker, self.options, self.screening
        header_messages = tuple(worker.header_messages)
        statement = screening.statement if options.strict and not screening.rejected else None
        nonce = new_nonce()
        env = worker.header_env
        if statement is not None and statement.name is not None:
            reference = self.command(statement.reference_command(nonce), env, " elaborating the statement")
            problem = _reference_problem(reference)
            if problem is not None:
                return _failure(ERROR, codes.STATEMENT_UNREADABLE,
                                f"the statement does not elaborate on this header: {problem}",
                                self.elapsed, self.diagnostics)
            env = reference.env
        response = self.command(self.split.body, env, "", options.infotree)
        if options.debug:
            self.diagnostics["memory_max"] = worker.rss_bytes()
        if isinstance(response, ErrorResponse):
            return Outcome(ERROR, header_messages=header_messages, time=self.elapsed, repl_message=response.message,
                           reasons=(Reason(codes.REPL_ERROR, f"REPL error: {response.message}"),),
                           diagnostics=self.diagnostics)
        if not isinstance(response, CommandResponse):
            return _failure(ERROR, codes.REPL_ERROR, f"unexpected REPL answer {type(response).__name__}",
                            self.elapsed, self.diagnostics)
        reasons = list(screening.reasons)
        header_errors = [m for m in header_messages if m.is_error]
        if header_errors:
            reasons.append(Reason(codes.HEADER_ERROR, header_errors[0].data.splitlines()[0]))
        reasons += judge(response.messages, response.sorries)
        tree = None if response.infotree is None else [t.to_json() for t in response.infotree]
        axioms = None
        if options.strict and not reasons and not screening.header_reasons:
            axioms, audit_reasons, incomplete = self._audit(response)
            reasons += audit_reasons
            if statement is not None and statement.name is not None and not reasons:
                reasons += self._compare(statement, nonce, response.env)
            if incomplete is not None and not reasons:
                return Outcome(ERROR, response.messages, header_messages, response.sorries, self.elapsed,
                               env=response.env, infotree=tree, axioms=axioms, reasons=(incomplete,),
                               diagnostics=self.diagnostics)
        verdict = INVALID if reasons or screening.header_reasons else VALID
        return Outcome(verdict, response.messages, header_messages, response.sorries, self.elapsed,
                       env=response.env, infotree=tree, axioms=axioms, reasons=tuple(reasons),
                       diagnostics=self.diagnostics, header_reasons=screening.header_reasons)

    def _audit(self, response: CommandResponse) -> tuple[dict[str, list[str]] | None, list[Reason], Reason | None]:
        """Axioms per declaration, the reasons they give, and why the audit is incomplete (None: it is not)."""
        plan = self.screening.audit
        if plan is None:
            return None, [], None
        env = self.worker.header_env if plan.on_header_env else response.env
        audit = self.command(plan.command, env, " during the axiom audit")
        if not isinstance(audit, CommandResponse):
            raise _Failed(_failure(ERROR, codes.REPL_ERROR,
                                   f"axiom audit failed: {getattr(audit, 'message', audit)!r}", self.elapsed,
                                   self.diagnostics))
        axioms, unresolved = _read_audit(plan, audit)
        incomplete = Reason(codes.AUDIT_INCOMPLETE, "axiom audit incomplete: " + "; ".join(unresolved)) \
            if unresolved else None
        return axioms, _axiom_reasons(axioms, self.checks.allowed_axioms), incomplete

    def _compare(self, statement: Statement, nonce: str, env: int | None) -> list[Reason]:
        """Lean's half of the statement check (see ``check.statement``): the submitted constant must prove the
        reference elaborated before it."""
        answer = self.command(statement.check_command(nonce), env, " comparing the statement")
        if not isinstance(answer, CommandResponse):
            raise _Failed(_failure(ERROR, codes.REPL_ERROR,
                                   f"statement check failed: {getattr(answer, 'message', answer)!r}", self.elapsed,
                                   self.diagnostics))
        errors = [m for m in answer.messages if m.is_error]
        if not errors:
            return []
        text = " ".join(errors[0].data.split())
        return [Reason(codes.STATEMENT_MISMATCH, f"statement differs: Lean does not accept `{statement.name}` as a "
                                                 f"proof of the statement: {text}")]


def _reference_problem(response: Any) -> str | None:
    """Why the reference statement did not elaborate, or None."""
    if isinstance(response, ErrorResponse):
        return response.message
    if not isinstance(response, CommandResponse) or response.env is None:
        return f"unexpected REPL answer {type(response).__name__}"
    errors = [m for m in response.messages if m.is_error]
    return errors[0].data.splitlines()[0] if errors else None


# --------------------------------------------------------------------------- #
# The verifier: cache, de-duplication, bounded fan-out


SnippetLike = Snippet | tuple[str, str] | list[str] | str


def as_snippet(item: SnippetLike, index: int) -> Snippet:
    """Accept a Snippet, an (id, code) pair or a bare code string (id = its index); records are ``api.records``'."""
    if isinstance(item, Snippet):
        return item
    if isinstance(item, str):
        return Snippet(str(index), item)
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return Snippet(str(item[0]), item[1])
    raise TypeError(f"cannot read a snippet from {type(item).__name__}")


def distinct_headers(snippets: Iterable[Snippet]) -> set[str]:
    """The headers ``snippets`` import: each distinct one costs a REPL import (a server caps how many per request)."""
    return {split_source(s.code).header for s in snippets if isinstance(s.code, str)}


ResultCallback = Callable[[int, VerifyResult], None]


@dataclass(frozen=True)
class VerifierStats:
    """What a verifier has answered since it started (``/health`` and ``/metrics`` read it)."""

    snippets: int
    verdicts: dict[Verdict, int]  # each of VERDICTS -> snippets answered with it
    cache: CacheStats


class BatchVerifier(Protocol):
    """What checks batches for the server and the CLI: the local :class:`Verifier`, or the Ray router
    (``leanstep.cluster.RayVerifier``); both de-duplicate and cache through a :class:`Deduplicator`."""

    def verify_batch(self, snippets: Sequence[Snippet], options: VerifyOptions,
                     on_result: ResultCallback | None = None) -> list[VerifyResult]:
        """One result per snippet, in input order, ``on_result(index, result)`` as each is known;
        one bad snippet never fails the batch."""
        ...

    def stats(self) -> VerifierStats:
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class PendingCheck:
    """A distinct snippet of a batch that the cache could not answer: checked once for all its copies."""

    key: str
    submission: Submission

    @property
    def split(self) -> SourceSplit:
        return self.submission.split


@dataclass(frozen=True)
class CheckRecord:
    """A distinct snippet of a batch, answered: what ``serve --trace`` writes of it (``leanstep.perf.trace``,
    which keeps digests and sizes only) for ``leanstep plan`` to size the caches from."""

    batch: int  # the batch's number at its Deduplicator, from 0
    header: str
    key: str | None  # the result cache's key (None: the batch asked for no cache)
    copies: int  # the batch's snippets it answered
    chars: int  # the body's length
    verdict: Verdict
    seconds: float  # REPL seconds of its check (0 when the cache answered)
    cached: bool
    timeout: float


class Deduplicator:
    """The one place a verifier keys snippets, answers repeats and counts verdicts.

    Identical (header, body, options) in a batch are checked once and share the answer, and
    definitive outcomes are cached across batches (``VerifyOptions.use_cache=False``: neither).
    The local :class:`Verifier` and the cluster router each own one, so what they check on (a
    pool, a cluster node) only ever sees distinct snippets. ``on_check`` hears of each distinct
    snippet as it is answered (``serve --trace``).
    """

    def __init__(self, cache: ResultCache, on_check: Callable[[CheckRecord], None] | None = None) -> None:
        self.cache = cache
        self.on_check = on_check
        self._lock = threading.Lock()
        self._verdicts = dict.fromkeys(VERDICTS, 0)
        self._snippets = 0
        self._batches = itertools.count()

    def next_batch(self) -> int:
        return next(self._batches)

    def plan(self, snippets: Sequence[Snippet], options: VerifyOptions,
             on_result: ResultCallback | None = None) -> BatchPlan:
        return BatchPlan(self, snippets, options, on_result)

    def count(self, results: Iterable[VerifyResult]) -> None:
        with self._lock:
            for result in results:
                self._verdicts[result.verdict] += 1
                self._snippets += 1

    def stats(self) -> VerifierStats:
        with self._lock:
            return VerifierStats(self._snippets, dict(self._verdicts), self.cache.stats())


class BatchPlan:
    """One batch against a :class:`Deduplicator`: ``answered`` at once (cache hits, unreadable
    snippets), and ``checks``, each distinct snippet left to check, listed once.

    Each check's outcome goes to ``resolve`` (or ``fail``), which caches it and answers every copy
    in its own id and lines, so each snippet is answered exactly once; ``on_result`` hears of each
    answer, and a callback that raises is logged, never loses a result. Resolving from several
    threads at once is safe.

    With ``options.first_valid`` ("first valid wins", for pass@k): ``checks`` take the groups in
    turn (each group's first snippet, then each group's second, ...), so every problem's first
    samples run before any problem's later ones; once a snippet of a group is valid (checked or
    cached), ``skipped`` gives the outcome of a check all of whose copies come after a valid
    snippet of their groups, which its runner answers instead of checking it. A snippet without a
    group is always checked. With ``options.deadline``, ``skipped`` also answers every check that
    would start too close to it.
    """

    def __init__(self, dedup: Deduplicator, snippets: Sequence[Snippet], options: VerifyOptions,
                 on_result: ResultCallback | None) -> None:
        self._dedup = dedup
        self.options = options
        self._on_result = on_result
        self._batch = dedup.next_batch()
        self._ids = [s.id for s in snippets]
        self._groups = [s.group for s in snippets]
        self._solved: dict[str, int] = {}  # group -> index of its earliest snippet found valid
        self._solved_lock = threading.Lock()
        self._results: list[VerifyResult | None] = [None] * len(snippets)
        self._copies: dict[str, tuple[list[int], list[SourceSplit]]] = {}
        self.answered: list[tuple[int, VerifyResult]] = []
        self.checks: list[PendingCheck] = []
        statements: dict[str, str | None] = {}
        for index, snippet in enumerate(snippets):
            if not isinstance(snippet.code, str):
                self.answered += self._answer([index], [SourceSplit("", "", 0)],
                                              _failure(ERROR, codes.INVALID_SNIPPET,
                                                       "invalid snippet: code must be a string"), False)
                continue
            split = split_source(snippet.code)
            key = ResultCache.key(split.header, split.body, options, snippet.statement) if options.use_cache \
                else f"#{index}"
            statements.setdefault(key, snippet.statement)
            indices, splits = self._copies.setdefault(key, ([], []))
            indices.append(index)
            splits.append(split)
        cache = dedup.cache
        if options.use_cache:
            cache.note_duplicates(sum(len(indices) - 1 for indices, _ in self._copies.values()))
        for key, (_, splits) in self._copies.items():
            hit = cache.get(key, options.timeout) if options.use_cache else None
            if hit is not None:
                self.answered += self._answer(self._copies[key][0], splits, hit, True)
                self._record(key, hit, cached=True)
            else:
                self.checks.append(PendingCheck(key, Submission(splits[0], statements[key])))
        if options.first_valid:
            self.checks = self._groups_in_turn(self.checks)

    def _groups_in_turn(self, checks: list[PendingCheck]) -> list[PendingCheck]:
        """``checks`` reordered to take the groups in turn, each group in its own order (a check without a
        group is a group of its own)."""
        first_seen: dict[str, int] = {}
        taken: dict[str, int] = {}
        keyed: list[tuple[tuple[int, int], PendingCheck]] = []
        for position, check in enumerate(checks):
            group = self._groups[self._copies[check.key][0][0]]
            if group is None:
                keyed.append(((0, position), check))
                continue
            turn = taken.get(group, 0)
            taken[group] = turn + 1
            keyed.append(((turn, first_seen.setdefault(group, position)), check))
        return [check for _, check in sorted(keyed, key=lambda pair: pair[0])]

    @property
    def gated(self) -> bool:
        """Whether a check may be answered ``skipped`` instead (first valid wins, or a deadline)."""
        return self.options.first_valid or self.options.deadline is not None

    def gate(self, check: PendingCheck) -> GroupGate:
        """How ``check``'s runner takes part in first valid wins and the deadline (see :class:`GroupGate`)."""
        indices = self._copies[check.key][0]
        return GroupGate(partial(self.skipped, check), partial(self._solve, indices))

    def skipped(self, check: PendingCheck) -> Outcome | None:
        """The ``skipped`` outcome of ``check`` when it must not start: the deadline is (nearly) there, or with
        ``first_valid`` every copy of it comes after a valid snippet of its group; else None (check it).

        Only an *earlier* valid snippet skips one, so every snippet before a group's first valid one is checked
        and the index of that first valid snippet is exact, whatever order concurrent checks end in: pass@k
        computed from it is unbiased."""
        deadline = self.options.deadline
        if deadline is not None and deadline - time.monotonic() < MIN_CHECK_SECONDS:
            return _failure(SKIPPED, codes.DEADLINE, "not checked: the deadline of its batch came before its check "
                                                     "could start")
        if not self.options.first_valid:
            return None
        indices = self._copies[check.key][0]
        with self._solved_lock:
            winners = [self._solved.get(g) for g in (self._groups[i] for i in indices) if g is not None]
        if len(winners) < len(indices) or any(w is None or w > i for w, i in zip(winners, indices, strict=True)):
            return None
        first = winners[0]
        assert first is not None
        message = (f"not checked: snippet {self._ids[first]!r}, before it in group {self._groups[first]!r}, was "
                   "valid (first valid wins; send first_valid false to check every snippet)")
        return _failure(SKIPPED, codes.GROUP_SOLVED, message)

    def resolve(self, check: PendingCheck, outcome: Outcome) -> list[tuple[int, VerifyResult]]:
        """Cache ``check``'s outcome and answer every copy of it; returns the ``(index, result)`` pairs."""
        if self.options.use_cache:
            self._dedup.cache.put(check.key, outcome)
        indices, splits = self._copies[check.key]
        answers = self._answer(indices, splits, outcome, False)
        self._record(check.key, outcome, cached=False)
        return answers

    def _record(self, key: str, outcome: Outcome, *, cached: bool) -> None:
        """Tell the Deduplicator's ``on_check`` of one answered distinct snippet (a failing one is logged)."""
        on_check = self._dedup.on_check
        if on_check is None:
            return
        indices, splits = self._copies[key]
        record = CheckRecord(self._batch, splits[0].header, key if self.options.use_cache else None, len(indices),
                             len(splits[0].body), outcome.verdict, 0.0 if cached else outcome.time, cached,
                             self.options.timeout)
        try:
            on_check(record)
        except Exception:
            log.exception("on_check failed for a snippet of batch %d", self._batch)

    def fail(self, check: PendingCheck, code: str, error: str) -> list[tuple[int, VerifyResult]]:
        """Answer every copy of ``check`` with verdict ``error`` (reason ``code``): it could not be checked."""
        return self.resolve(check, _failure(ERROR, code, error))

    def _solve(self, indices: list[int]) -> None:
        """The snippets at ``indices`` are valid: their groups are solved from them on (each group keeps its
        earliest valid snippet)."""
        with self._solved_lock:
            for index in indices:
                group = self._groups[index]
                if group is not None and index < self._solved.get(group, len(self._ids)):
                    self._solved[group] = index

    def results(self) -> list[VerifyResult]:
        """Every answer in input order, once every check is resolved."""
        results = [r for r in self._results if r is not None]
        if len(results) != len(self._results):
            raise RuntimeError(f"{len(self._results) - len(results)} snippets of the batch were never answered")
        return results

    def _answer(self, indices: list[int], splits: list[SourceSplit], outcome: Outcome,
                cached: bool) -> list[tuple[int, VerifyResult]]:
        answers = [(index, _to_user(outcome, splits[k], self._ids[index], cached or k > 0))
                   for k, index in enumerate(indices)]
        if outcome.verdict == VALID:
            self._solve(indices)
        self._dedup.count(result for _, result in answers)
        for index, result in answers:
            self._results[index] = result
            if self._on_result is not None:
                try:
                    self._on_result(index, result)
                except Exception:  # a faulty callback must not lose results
                    log.exception("on_result callback failed for snippet %r", result.id)
        return answers


class _Call:
    """One :meth:`PoolChecker.check` call: how to run or cancel its checks, which is next, how many are left."""

    def __init__(self, count: int, run: Callable[[int], None], cancel: Callable[[int], None]) -> None:
        self.count = count
        self.run = run
        self.cancel = cancel
        self.taken = 0
        self.left = count
        self.done = threading.Condition()

    def finished_one(self) -> None:
        with self.done:
            self.left -= 1
            self.done.notify_all()

    def wait(self) -> None:
        with self.done:
            while self.left:
                self.done.wait()


class _Turns:
    """The checks of concurrent calls, taken in turn: the next check of one call, then of the next call, each
    call's own in order. So a large batch does not hold back a small one, and the problems of an evaluation
    checked by concurrent calls get their first samples checked before any problem's later ones."""

    def __init__(self) -> None:
        self._calls: deque[_Call] = deque()
        self._lock = threading.Lock()

    def add(self, call: _Call) -> None:
        if call.count:
            with self._lock:
                self._calls.append(call)

    def take(self) -> tuple[_Call, int]:
        """The next check in turn: its call and its index there."""
        with self._lock:
            call = self._calls.popleft()
            index = call.taken
            call.taken += 1
            if call.taken < call.count:
                self._calls.append(call)
        return call, index


class PoolChecker:
    """Checks distinct submissions on a pool, over a bounded thread pool shared by all callers.

    No cache and no de-duplication: its callers (a :class:`Verifier`, a cluster node answering
    the router) get only distinct snippets. ``checks``: the source policy and sealed re-check.
    Concurrent calls take turns (:class:`_Turns`): a thread that frees up runs the next check of
    the call after the one whose check was taken last.
    """

    def __init__(self, pool: ReplPool, *, threads: int | None = None, priority: Priority = Priority.BATCH,
                 checks: Checks | None = None) -> None:
        self.pool = pool
        self.priority = priority
        self.checks = checks or Checks()
        self.threads = threads or max(2, 2 * pool.settings.max_repls)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="verify")
        self._turns = _Turns()

    def close(self) -> None:
        """Wait for the running checks; those not started are answered ``server shutting down``."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def check(self, submissions: Sequence[Submission], options: VerifyOptions,
              on_outcome: Callable[[int, Outcome], object] | None = None,
              gates: Callable[[int], GroupGate] | None = None) -> list[Outcome]:
        """One outcome per submission, in order, ``on_outcome(index, outcome)`` as each finishes; never raises.

        Checks start in index order. ``gates(index)``: that check's part in first valid wins and the deadline
        (it may be answered ``skipped`` instead).
        """
        outcomes: list[Outcome | None] = [None] * len(submissions)

        def finish(index: int, outcome: Outcome) -> None:
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(index, outcome)

        def run(index: int) -> None:
            try:
                outcome = _run(self.pool, submissions[index], options, self.priority, self.checks,
                               None if gates is None else gates(index))
            except BaseException as exc:  # noqa: BLE001 - never lose a snippet, whatever went wrong
                outcome = _failure(ERROR, codes.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
            finish(index, outcome)

        def cancel(index: int) -> None:
            finish(index, _failure(ERROR, codes.SHUTTING_DOWN, f"{SHUTTING_DOWN}: the check had not started"))

        call = _Call(len(submissions), run, cancel)
        self._turns.add(call)
        for _ in range(len(submissions)):  # one turn per check: each runs (or cancels) the next check in turn
            try:
                future = self._executor.submit(self._turn, False)
            except RuntimeError:  # shut down
                self._turn(cancelled=True)
                continue
            future.add_done_callback(self._cancelled_turn)
        call.wait()
        done_outcomes = [o for o in outcomes if o is not None]
        if len(done_outcomes) != len(outcomes):
            raise RuntimeError(f"{len(outcomes) - len(done_outcomes)} checks gave no outcome")
        return done_outcomes

    def _turn(self, cancelled: bool) -> None:
        """Run the next check in turn, of whichever call (or, ``cancelled``, answer that it did not start)."""
        call, index = self._turns.take()
        try:
            (call.cancel if cancelled else call.run)(index)
        finally:
            call.finished_one()

    def _cancelled_turn(self, future: Future) -> None:
        if future.cancelled():  # close() cancelled it before it ran: the check it would have run did not start
            self._turn(cancelled=True)


class Verifier:
    """Checks batches on a pool: repeats answered by a :class:`Deduplicator`, the rest by a :class:`PoolChecker`."""

    def __init__(self, pool: ReplPool, *, cache: ResultCache | None = None, cache_size: int = 10000,
                 threads: int | None = None, priority: Priority = Priority.BATCH, checks: Checks | None = None,
                 on_check: Callable[[CheckRecord], None] | None = None) -> None:
        self.pool = pool
        self.dedup = Deduplicator(cache if cache is not None else ResultCache(cache_size), on_check)
        self.checker = PoolChecker(pool, threads=threads, priority=priority, checks=checks)

    def close(self) -> None:
        self.checker.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, snippet: SnippetLike, options: VerifyOptions | None = None) -> VerifyResult:
        return self.verify_batch([snippet], options)[0]

    def verify_batch(self, snippets: Sequence[SnippetLike], options: VerifyOptions | None = None,
                     on_result: ResultCallback | None = None) -> list[VerifyResult]:
        """Results in input order; one bad snippet never fails the batch. ``on_result(index, result)`` streams."""
        options = options or VerifyOptions()
        plan = self.dedup.plan([as_snippet(s, i) for i, s in enumerate(snippets)], options, on_result)
        checks = plan.checks
        self.checker.check([c.submission for c in checks], options,
                           lambda i, outcome: plan.resolve(checks[i], outcome),
                           (lambda i: plan.gate(checks[i])) if plan.gated else None)
        return plan.results()

    def stats(self) -> VerifierStats:
        return self.dedup.stats()


def verify_batch(pool: ReplPool, snippets: Sequence[SnippetLike], options: VerifyOptions | None = None, *,
                 on_result: ResultCallback | None = None, cache: ResultCache | None = None,
                 max_workers: int | None = None, checks: Checks | None = None,
                 **option_fields: Any) -> list[VerifyResult]:
    """One-shot batch check on ``pool`` (a :class:`Verifier` with a private cache unless one is given).

    Options may be passed as a :class:`VerifyOptions` or as keywords (timeout=, infotree=, trust=, use_cache=).
    """
    if options is None:
        options = VerifyOptions(**option_fields)
    elif option_fields:
        options = replace(options, **option_fields)
    with Verifier(pool, cache=cache, threads=max_workers, checks=checks) as verifier:
        return verifier.verify_batch(snippets, options, on_result)


def verify_code(pool: ReplPool, code: str, **option_fields: Any) -> VerifyResult:
    """Check one piece of Lean code (id "0")."""
    return verify_batch(pool, [code], **option_fields)[0]


__all__ = [
    "ALLOWED_AXIOMS", "ERROR", "INVALID", "SHUTTING_DOWN", "SKIPPED", "TIMEOUT", "VALID", "VERDICTS", "BatchPlan",
    "BatchVerifier", "CacheStats", "CheckRecord", "Checks", "Deduplicator", "GroupGate", "Outcome", "PendingCheck",
    "PoolChecker", "RecheckReport", "ResultCache", "SealedCheck", "Snippet", "Submission", "Verifier", "VerifierStats",
    "VerifyOptions", "VerifyResult", "as_snippet", "distinct_headers",
    "judge", "parse_axioms", "plan_audit", "verify_batch", "verify_code",
]
