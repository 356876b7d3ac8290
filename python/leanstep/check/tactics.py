"""Check candidate tactics against the goal at an ``llmstep`` call, in parallel.

Goal context
    The editor sends either ``context`` (the file text up to the call, as
    llmstep does) or ``source`` + ``position`` (the whole file and the call's
    1-based line / 0-based code-point column). Both become a
    :class:`GoalContext`:

    * ``header``: the import lines as :func:`leanstep.check.source.split_source`
      normalises them (the same key ``/verify`` uses), so every file with the
      same imports shares warm REPLs;
    * ``preamble``: every command between the header and the current
      declaration (elaborated once per REPL and cached by content hash, see
      ``Worker.preamble``);
    * ``declaration``: the current declaration from its first line (doc comment
      and attributes included) up to the call, with the call replaced by
      ``sorry``; everything after the call is dropped and the brackets still
      open at the call are closed, so ``exact f (by llmstep "")`` becomes
      ``exact f (by sorry)``. It is sent as its own command on the preamble's
      env (a proof state made by a command sees the env from before that
      command, so lemmas of the preamble must live in an earlier command).
      The proof state of the ``sorry`` at the call's exact position (positions
      are relative to the submitted text) is the goal every candidate runs on.

Heartbeats
    The declaration is sent as ``set_option maxHeartbeats N in`` + newline +
    declaration. Wrapping each *candidate* as ``set_option maxHeartbeats N in
    tac`` parses as one tactic but does not cap anything: the tactic-level
    ``set_option`` goes through ``withOptions``, which in Lean core updates the
    options, ``diag`` and ``maxRecDepth`` of ``Core.Context`` but not its
    ``maxHeartbeats`` (and the wrapper would also shift the columns of parse
    errors). The command-level option reaches the options of the ``sorry``'s
    context, which is where the REPL's proof snapshot takes its limit from on
    Lean versions whose ``ContextInfo.runCoreM`` reads ``maxHeartbeats`` from
    the options (the REPL's issue #69); elsewhere Lean's default applies. The
    hard limit is therefore the wall clock: a candidate still running when the
    budget ends is answered ``invalid`` (timeout) at the budget, and its REPL
    is killed and replaced by the pool.

Fan-out: replay, not pickles
    Every REPL taking part builds the proof state itself (header env from the
    pool, preamble env from its per-worker cache, one declaration command).
    Pickling the proof state once and unpickling it elsewhere was rejected:
    pickle files are written in one worker's private directory, which sandboxed
    workers cannot read from each other; unpickling re-imports the header
    unless an env is given and then replays every constant of the preamble;
    session-declared scoped notations are not restored; and the unpickled
    region is never freed. Replaying the declaration is one short command per
    worker, usually cheaper than an unpickle, and each worker keeps the proof
    states it built (by preamble + declaration), so the same call in an
    unchanged file (Lean re-elaborating it) sends only the tactics.

Classification (docs/repl-protocol.md §5.9-5.10)
    ``closes_goal``: ``proofStatus == "Completed"`` and no error message;
    ``valid``: no error, goals remain, no ``sorry`` used; ``invalid``: a thrown
    ``{"message": "Lean error:..."}``, an error message Lean recovered from,
    a ``sorry``, a proof the kernel rejected, or a timeout; ``unchecked``: no
    goal context (nothing to check against, the budget ended before the
    candidate started, no REPL was free, or the server shut down mid-check). A
    request never fails because of checking.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from leanstep.check.source import split_source
from leanstep.repl.pool import PoolClosed, PoolOverloaded, Priority, ReplPool, Worker
from leanstep.repl.process import ReplError, ReplTimeout
from leanstep.repl.protocol import (
    COMPLETED,
    CommandRequest,
    CommandResponse,
    ErrorResponse,
    Pos,
    ProtocolError,
    TacticRequest,
    TacticResponse,
)

log = logging.getLogger(__name__)

CLOSES_GOAL = "closes_goal"
VALID = "valid"
INVALID = "invalid"
UNCHECKED = "unchecked"
STATUSES = (CLOSES_GOAL, VALID, UNCHECKED, INVALID)

CALL_TOKEN = "llmstep"
LEAN_ERROR_PREFIX = "Lean error:\n"
PROOF_STATES_PER_WORKER = 32  # cached goal proof states per REPL (same file, same call: no replay)
MAX_ATTEMPTS = 3  # REPLs one lane may go through (a crash or a lost process costs one)
OPENERS = {"(": ")", "[": "]", "{": "}", "⟨": "⟩", "⦃": "⦄", "⟦": "⟧"}
CLOSERS = {v: k for k, v in OPENERS.items()}
# Column-0 words that continue the previous command instead of starting one.
CONTINUATION_WORDS = ("|", "where", "termination_by", "decreasing_by", "deriving", "with", ":=", "·", ".", "else",
                      "then", "<;>")
# Lines that belong to the declaration that follows them.
ATTACHED_PREFIXES = ("/--", "@[")


class ContextError(ValueError):
    """The goal at the call cannot be located; candidates are then answered ``unchecked``."""


# --------------------------------------------------------------------------- #
# Goal context


@dataclass(frozen=True)
class GoalContext:
    """What a REPL must elaborate to reach the goal at the call.

    ``sorry_pos`` is the position of the inserted ``sorry`` in :attr:`command`
    (the text actually sent), 1-based line and code-point column.
    """

    header: str
    preamble: str
    declaration: str
    sorry_pos: Pos
    heartbeats: int = 0

    @property
    def command(self) -> str:
        if self.heartbeats > 0:
            return f"set_option maxHeartbeats {self.heartbeats} in\n" + self.declaration
        return self.declaration

    @property
    def key(self) -> str:
        """Identifies the proof state this context produces on a given REPL."""
        return hashlib.sha256(f"{self.preamble}\0{self.command}".encode()).hexdigest()


@dataclass
class _ScanState:
    comment_depth: int = 0
    in_string: bool = False
    in_line_comment: bool = False  # only at the end of the text
    brackets: list[str] = field(default_factory=list)


_INTERESTING = re.compile(r"--|/-|-/|[\"'\\()\[\]{}⟨⟩⦃⦄⟦⟧]")


def _scan(text: str, line_starts: list[int] | None = None) -> tuple[_ScanState, list[_ScanState]]:
    """Walk Lean text tracking block comments (nested), strings, char literals and brackets.

    Returns the state at the end and, if ``line_starts`` is given, the
    comment/string state at each of those offsets (in order; brackets are not
    recorded there).
    """
    state = _ScanState()
    snapshots: list[_ScanState] = []
    targets = iter(line_starts or ())
    target = next(targets, None)
    i, n = 0, len(text)
    while i < n:
        match = _INTERESTING.search(text, i)
        j = n if match is None else match.start()
        while target is not None and target <= j:
            snapshots.append(_ScanState(state.comment_depth, state.in_string))
            target = next(targets, None)
        if match is None:
            break
        i, tok = j, match.group()
        if state.comment_depth:
            if tok == "/-":
                state.comment_depth += 1
            elif tok == "-/":
                state.comment_depth -= 1
            i += len(tok) if tok in ("/-", "-/") else 1
            continue
        if state.in_string:
            if tok == "\\":
                i += 2
                continue
            if tok == '"':
                state.in_string = False
            i += len(tok) if tok in ("/-", "-/", "--") else 1
            continue
        if tok == "--":
            nl = text.find("\n", i)
            if nl < 0:
                state.in_line_comment = True
            i = n if nl < 0 else nl
            continue
        if tok == "/-":
            state.comment_depth += 1
            i += 2
            continue
        if tok == "-/":
            i += 2
            continue
        if tok == '"':
            state.in_string = True
        elif tok == "'" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_'!?.")):
            # a char literal: 'a', '"', '\n'
            if text.startswith("\\", i + 1) and i + 3 < n and text[i + 3] == "'":
                i += 4
                continue
            if i + 2 < n and text[i + 2] == "'" and text[i + 1] != "\n":
                i += 3
                continue
        elif tok in OPENERS:
            state.brackets.append(tok)
        elif tok in CLOSERS:
            if state.brackets and state.brackets[-1] == CLOSERS[tok]:
                state.brackets.pop()
        i += 1
    while target is not None:
        snapshots.append(_ScanState(state.comment_depth, state.in_string))
        target = next(targets, None)
    return state, snapshots


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


def _is_command_start(line: str) -> bool:
    """A column-0 line that begins a command (Lean style puts every command at column 0)."""
    if not line or line[0].isspace():
        return False
    if line.startswith("--"):
        return False
    if line.startswith("/-") and not line.startswith("/--"):
        return False
    if line[0] in CLOSERS or line[0] in "|·.,":
        return False
    first = line.split(None, 1)[0]
    return first not in CONTINUATION_WORDS


def _attaches_to_next(line: str) -> bool:
    """Doc comments, attributes and ``... in`` combinators belong to the command after them."""
    stripped = line.rstrip()
    return stripped.startswith(ATTACHED_PREFIXES) or stripped.endswith(" in")


def _split_header(text: str, window: int = 1 << 16) -> tuple[str, str]:
    """(header, body) by :func:`split_source`, run on the file's head only (the header is at the top)."""
    head = text[:window]
    split = split_source(head)
    if len(head) < len(text) and not split.body.strip():
        split = split_source(text)  # a header longer than the window: split the whole text
        return split.header, split.body
    return split.header, split.body + text[len(head):]


def _build(before: str, heartbeats: int) -> GoalContext:
    """The goal context for a call that starts right after ``before``."""
    before = before.replace("\r\n", "\n")
    header, body = _split_header(before)
    starts = _line_starts(body)
    end_state, states = _scan(body, starts)
    if end_state.comment_depth or end_state.in_string or end_state.in_line_comment:
        raise ContextError("the call is inside a comment or a string")
    # Command starts: column-0 lines outside comments and strings. Brackets are
    # not trusted here, so one unbalanced bracket in the preamble cannot hide
    # every later command.
    command_starts: list[tuple[int, str]] = []
    for off, st in zip(starts, states):
        if st.comment_depth or st.in_string:
            continue
        line_end = body.find("\n", off)
        line = body[off: len(body) if line_end < 0 else line_end]
        if _is_command_start(line):
            command_starts.append((off, line))
    if not command_starts:
        raise ContextError("no declaration found before the call")
    pos = len(command_starts) - 1
    while pos > 0 and _attaches_to_next(command_starts[pos - 1][1]):
        pos -= 1
    decl_off = command_starts[pos][0]
    preamble = body[:decl_off].strip()
    decl_prefix = body[decl_off:]
    if not decl_prefix.strip():
        raise ContextError("no declaration found before the call")
    decl_state, _ = _scan(decl_prefix)
    closers = "".join(OPENERS[b] for b in reversed(decl_state.brackets))
    # The call replaced by `sorry`; the rest of the line and of the file is dropped.
    declaration = decl_prefix + "sorry" + closers
    line = decl_prefix.count("\n") + 1
    column = len(decl_prefix) - (decl_prefix.rfind("\n") + 1)
    extra = 1 if heartbeats > 0 else 0
    return GoalContext(header=header, preamble=preamble + "\n" if preamble else "", declaration=declaration,
                       sorry_pos=Pos(line + extra, column), heartbeats=heartbeats)


def goal_context_from_context(context: str, heartbeats: int = 0) -> GoalContext:
    """From llmstep's ``context``: the file text up to the start of the ``llmstep`` token.

    A context that still ends with the call (``llmstep "..."`` on its last
    line) is cut at the call, so either convention works.
    """
    if not isinstance(context, str) or not context.strip():
        raise ContextError("no context given")
    text = context.replace("\r\n", "\n")
    last_line_start = text.rfind("\n") + 1
    match = re.search(r"\bllmstep\b", text[last_line_start:])
    if match is not None:
        text = text[: last_line_start + match.start()]
    return _build(text, heartbeats)


def goal_context_from_source(source: str, line: int, column: int, heartbeats: int = 0) -> GoalContext:
    """From the whole file and the call's 1-based line and 0-based code-point column."""
    if not isinstance(source, str) or not source.strip():
        raise ContextError("no source given")
    lines = source.replace("\r\n", "\n").split("\n")
    if not 1 <= line <= len(lines):
        raise ContextError(f"position line {line} is outside the source ({len(lines)} lines)")
    if not 0 <= column <= len(lines[line - 1]):
        raise ContextError(f"position column {column} is outside line {line} ({len(lines[line - 1])} characters)")
    before = "\n".join(lines[: line - 1] + [lines[line - 1][:column]])
    return _build(before, heartbeats)


def build_goal_context(
    context: str | None = None,
    source: str | None = None,
    position: tuple[int, int] | None = None,
    heartbeats: int = 0,
) -> GoalContext:
    """``source`` + ``position`` when given, else ``context``; :class:`ContextError` when neither works."""
    if source is not None and position is not None:
        return goal_context_from_source(source, position[0], position[1], heartbeats)
    if context is not None:
        return goal_context_from_context(context, heartbeats)
    raise ContextError("no context: send `context` (file text up to the call) or `source` + `position`")


# --------------------------------------------------------------------------- #
# Results


class CandidateLike(Protocol):
    text: str
    score: float


@dataclass(frozen=True)
class CheckedCandidate:
    """One candidate and its verdict; ``time`` is seconds of REPL time spent on it."""

    text: str
    status: str
    goals: tuple[str, ...] = ()
    message: str | None = None
    score: float = 0.0
    time: float = 0.0
    progress: bool = True  # False: ran without error but left the goal unchanged


@dataclass(frozen=True)
class CheckReport:
    """All candidates (in input order) plus what it cost.

    ``context_error``: why nothing could be checked (None when a proof state
    was reached). ``setup_time``: seconds until the first REPL had the proof
    state. Request counts are REPL requests actually sent during this check.
    """

    candidates: tuple[CheckedCandidate, ...]
    goal: str | None = None
    context_error: str | None = None
    setup_time: float = 0.0
    total_time: float = 0.0
    workers: int = 0
    lean_requests: int = 0
    preamble_requests: int = 0
    declaration_requests: int = 0
    tactic_requests: int = 0
    preamble_reused: int = 0
    declaration_reused: int = 0
    timed_out: int = 0


def classify(response: object, text: str, score: float, elapsed: float, goal: str | None) -> CheckedCandidate:
    """Turn a REPL answer to a tactic into a verdict (both error channels, protocol §5.9-5.10)."""
    if isinstance(response, ErrorResponse):
        message = response.message
        if message.startswith(LEAN_ERROR_PREFIX):
            message = message[len(LEAN_ERROR_PREFIX):]
        return CheckedCandidate(text, INVALID, (), message.strip() or "Lean error", score, elapsed)
    if not isinstance(response, TacticResponse):
        return CheckedCandidate(text, INVALID, (), f"unexpected REPL answer {type(response).__name__}", score, elapsed)
    errors = [m.data for m in response.messages if m.is_error]
    goals = tuple(response.goals)
    if errors:
        return CheckedCandidate(text, INVALID, goals, "\n".join(errors), score, elapsed)
    if response.sorries:
        return CheckedCandidate(text, INVALID, goals, "the tactic uses `sorry`", score, elapsed)
    if response.proof_status == COMPLETED:
        return CheckedCandidate(text, CLOSES_GOAL, (), None, score, elapsed)
    if goals:
        if "sorry" in response.proof_status:
            return CheckedCandidate(text, INVALID, goals, "the tactic uses `sorry`", score, elapsed)
        progress = not (goal is not None and goals == (goal,))
        return CheckedCandidate(text, VALID, goals, None if progress else "no progress: the goal is unchanged",
                                score, elapsed, progress)
    return CheckedCandidate(text, INVALID, goals, f"proof not accepted: {response.proof_status}", score, elapsed)


# --------------------------------------------------------------------------- #
# The checker


class _Run:
    """Shared state of one check: a work queue of candidate indices and the verdicts so far."""

    def __init__(self, candidates: Sequence[CandidateLike], deadline: float, budget: float,
                 totals: _Totals | None = None) -> None:
        self.totals = totals
        self.candidates = list(candidates)
        self.deadline = deadline
        self.budget = budget
        self.cond = threading.Condition()
        self.next_index = 0
        self.results: dict[int, CheckedCandidate] = {}
        self.running: dict[int, float] = {}
        self.context_error: str | None = None
        self.goal: str | None = None
        self.ready_at: float | None = None
        self.lanes_alive = 0
        self.workers = 0
        self.counts = {"preamble": 0, "declaration": 0, "tactic": 0, "reused": 0, "declaration_reused": 0}
        self.failure: str | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def finished(self) -> bool:
        return len(self.results) == len(self.candidates) or self.context_error is not None

    def take(self) -> int | None:
        with self.cond:
            if self.context_error is not None or self.next_index >= len(self.candidates) or self.remaining() <= 0:
                return None
            index = self.next_index
            self.next_index += 1
            self.running[index] = time.monotonic()
            return index

    def has_work(self) -> bool:
        with self.cond:
            return self.context_error is None and self.next_index < len(self.candidates) and self.remaining() > 0

    def put(self, index: int, result: CheckedCandidate) -> None:
        with self.cond:
            self.running.pop(index, None)
            self.results.setdefault(index, result)
            self.cond.notify_all()

    def count(self, **deltas: int) -> None:
        with self.cond:
            for key, value in deltas.items():
                self.counts[key] += value
        if self.totals is not None:
            self.totals.add(**deltas)


class _Totals:
    """Requests of every check so far, including work that finished after its answer was sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"preamble": 0, "declaration": 0, "tactic": 0, "reused": 0, "declaration_reused": 0}

    def add(self, **deltas: int) -> None:
        with self._lock:
            for key, value in deltas.items():
                self._counts[key] += value

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class TacticChecker:
    """Runs candidates on the goal of a :class:`GoalContext` over the pool's warm REPLs.

    ``budget``: wall-clock seconds for the whole check (default for
    :meth:`check`); the answer comes back at the budget at the latest.
    ``candidate_timeout``: optional per-candidate wall-clock cap (below the
    budget). ``prepare_timeout``: how long building the proof state (preamble,
    declaration) may run in the background after the budget, so that a slow
    preamble is still cached for the next call instead of being killed.
    ``max_workers``: REPLs used at once (default: the pool's ``max_repls``).
    ``cache_preamble=False`` re-elaborates the preamble on every call (a
    header-only cache, as in Kimina's server; for benchmarks).
    """

    def __init__(
        self,
        pool: ReplPool,
        *,
        budget: float = 5.0,
        candidate_timeout: float | None = None,
        prepare_timeout: float = 60.0,
        max_workers: int | None = None,
        priority: Priority = Priority.INTERACTIVE,
        cache_preamble: bool = True,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        self.pool = pool
        self.budget = budget
        self.candidate_timeout = candidate_timeout
        self.prepare_timeout = prepare_timeout
        self.max_workers = max_workers
        self.priority = priority
        self.cache_preamble = cache_preamble
        self._totals = _Totals()
        # worker -> {context key: (proof state id, goal)}; dropped with the worker when it is replaced.
        self._states: weakref.WeakKeyDictionary[Worker, OrderedDict[str, tuple[int, str]]] = \
            weakref.WeakKeyDictionary()
        self._states_lock = threading.Lock()

    def totals(self) -> dict[str, int]:
        """Cumulative REPL requests of this checker by kind (``preamble``, ``declaration``, ``tactic``)
        and preamble cache hits (``reused``), background work included."""
        return self._totals.snapshot()

    def check(self, context: GoalContext | None, candidates: Sequence[CandidateLike],
              budget: float | None = None) -> CheckReport:
        """Verdicts for every candidate (input order), returned within ``budget`` seconds."""
        started = time.monotonic()
        budget = self.budget if budget is None else budget
        if not candidates:
            return CheckReport((), total_time=0.0)
        if context is None:
            return self._unchecked(candidates, "no goal context", started)
        run = _Run(candidates, started + budget, budget, self._totals)
        lanes = min(len(candidates), self.max_workers or self.pool.settings.max_repls)
        with run.cond:
            run.lanes_alive = lanes
        for lane in range(lanes):
            threading.Thread(target=self._lane, args=(run, context), name=f"check-lane-{lane}", daemon=True).start()
        with run.cond:
            while not run.finished() and run.lanes_alive > 0:
                remaining = run.remaining()
                if remaining <= 0:
                    break
                run.cond.wait(remaining)
            return self._report(run, started)

    # -- one lane: a REPL that builds the proof state and takes candidates ----

    def _lane(self, run: _Run, context: GoalContext) -> None:
        attempts = 0
        try:
            while run.has_work() and attempts < MAX_ATTEMPTS:
                attempts += 1
                try:
                    with self.pool.acquire(context.header, self.priority, wait=max(run.remaining(), 0.0)) as worker:
                        if not self._serve(run, context, worker):
                            return
                except (PoolOverloaded, PoolClosed) as exc:
                    with run.cond:
                        run.failure = run.failure or f"no REPL free: {exc}"
                    return
                except ReplError as exc:  # the worker could not start, or was lost while preparing
                    with run.cond:
                        run.failure = run.failure or f"REPL failed: {exc}"
                    if isinstance(exc, ReplTimeout):
                        return
        except Exception as exc:  # never let a lane die silently: the caller waits on lanes_alive
            log.exception("tactic check lane failed")
            with run.cond:
                run.failure = run.failure or f"internal error: {exc}"
        finally:
            with run.cond:
                run.lanes_alive -= 1
                run.cond.notify_all()

    def _serve(self, run: _Run, context: GoalContext, worker: Worker) -> bool:
        """Prepare the proof state on ``worker`` and check candidates until none are left.

        Returns False when the lane should stop, True to acquire another worker
        (this one was lost) and go on.
        """
        if not run.has_work():
            return False  # the other lanes took every candidate while this one waited for a REPL
        with run.cond:
            run.workers += 1
        proof_state = self._prepare(run, context, worker)
        if proof_state is None:
            return False
        while True:
            index = run.take()
            if index is None:
                return False
            candidate = run.candidates[index]
            limit = run.remaining()
            if self.candidate_timeout is not None:
                limit = min(limit, self.candidate_timeout)
            t0 = time.monotonic()
            try:
                request = TacticRequest(candidate.text, proof_state)
            except ProtocolError as exc:
                run.put(index, CheckedCandidate(candidate.text, INVALID, (), f"not sent to Lean: {exc}",
                                                candidate.score, 0.0))
                continue
            run.count(tactic=1)
            try:
                response = worker.run(request, max(limit, 0.001))
            except ReplTimeout:
                elapsed = time.monotonic() - t0
                run.put(index, CheckedCandidate(
                    candidate.text, INVALID, (),
                    f"timeout: still running after {elapsed:.2f} s (checking budget {run.budget:g} s); "
                    "its REPL was stopped", candidate.score, elapsed))
                return run.has_work()
            except ReplError as exc:
                if self.pool.closed:  # the shutdown killed the REPL: the tactic is not at fault
                    run.put(index, CheckedCandidate(candidate.text, UNCHECKED, (), "not checked: server shutting down",
                                                    candidate.score, time.monotonic() - t0))
                    return False
                run.put(index, CheckedCandidate(candidate.text, INVALID, (), f"the REPL crashed on this tactic: {exc}",
                                                candidate.score, time.monotonic() - t0))
                return True
            run.put(index, classify(response, candidate.text, candidate.score, time.monotonic() - t0, run.goal))

    def _prepare(self, run: _Run, context: GoalContext, worker: Worker) -> int | None:
        """The proof-state id of the call's ``sorry`` on this worker, or None (context error recorded)."""
        errors = [m.data for m in worker.header_messages if m.is_error]
        if errors:
            self._context_error(run, f"the header failed: {errors[0].splitlines()[0]}")
            return None
        if self.cache_preamble:
            with self._states_lock:
                states = self._states.setdefault(worker, OrderedDict())
                known = states.get(context.key)
                if known is not None:
                    states.move_to_end(context.key)
            if known is not None:  # the same call in the same file again (e.g. Lean re-elaborated it)
                run.count(declaration_reused=1)
                self._ready(run, known[1])
                return known[0]
        timeout = max(run.remaining(), self.prepare_timeout)
        env = worker.header_env
        if context.preamble.strip():
            if self.cache_preamble:
                sent = worker.process.requests_sent
                response = worker.preamble(context.preamble, timeout)
                cached = worker.process.requests_sent == sent  # answered from the worker's cache
                run.count(**({"reused": 1} if cached else {"preamble": 1}))
            else:
                run.count(preamble=1)
                response = worker.run(CommandRequest(context.preamble, env=env), timeout)
            if not isinstance(response, CommandResponse):
                self._context_error(run, f"the preamble was refused: {getattr(response, 'message', response)}")
                return None
            env = response.env
        if run.remaining() <= 0:
            return None  # the preamble is cached for the next call; this one answers unchecked
        run.count(declaration=1)
        response = worker.run(CommandRequest(context.command, env=env), timeout)
        if not isinstance(response, CommandResponse):
            self._context_error(run, f"the declaration was refused: {getattr(response, 'message', response)}")
            return None
        for sorry in response.sorries:
            if sorry.pos == context.sorry_pos and sorry.proof_state is not None:
                if self.cache_preamble:
                    with self._states_lock:
                        states = self._states.setdefault(worker, OrderedDict())
                        states[context.key] = (sorry.proof_state, sorry.goal)
                        if len(states) > PROOF_STATES_PER_WORKER:
                            states.popitem(last=False)
                self._ready(run, sorry.goal)
                return sorry.proof_state
        errors = [f"{m.pos.line}:{m.pos.column}: {m.data}" for m in response.messages if m.is_error]
        detail = f"; Lean said: {errors[0]}" if errors else ""
        self._context_error(run, f"no goal found at the call (line {context.sorry_pos.line}, column "
                                 f"{context.sorry_pos.column} of the declaration){detail}")
        return None

    @staticmethod
    def _ready(run: _Run, goal: str) -> None:
        with run.cond:
            if run.goal is None:
                run.goal = goal
            if run.ready_at is None:
                run.ready_at = time.monotonic()

    @staticmethod
    def _context_error(run: _Run, reason: str) -> None:
        with run.cond:
            if run.context_error is None and run.ready_at is None:
                run.context_error = reason
            run.cond.notify_all()

    # -- the answer ------------------------------------------------------------

    def _report(self, run: _Run, started: float) -> CheckReport:
        """Snapshot of the run (lock held): unfinished candidates get a clear verdict."""
        now = time.monotonic()
        out: list[CheckedCandidate] = []
        timed_out = 0
        for index, candidate in enumerate(run.candidates):
            result = run.results.get(index)
            if result is not None:
                if result.message and result.message.startswith("timeout:"):
                    timed_out += 1
                out.append(result)
            elif run.context_error is not None:
                out.append(CheckedCandidate(candidate.text, UNCHECKED, (), f"not checked: {run.context_error}",
                                            candidate.score))
            elif index in run.running:
                timed_out += 1
                elapsed = now - run.running[index]
                out.append(CheckedCandidate(
                    candidate.text, INVALID, (),
                    f"timeout: still running after {elapsed:.2f} s when the checking budget ({run.budget:g} s) ended; "
                    "its REPL is being stopped", candidate.score, elapsed))
            else:
                if run.ready_at is None:
                    reason = run.failure or (f"the goal context was not ready within the checking budget "
                                             f"({run.budget:g} s); it keeps elaborating and later calls reuse it")
                else:
                    reason = run.failure or f"the checking budget ({run.budget:g} s) ended before this candidate ran"
                out.append(CheckedCandidate(candidate.text, UNCHECKED, (), f"not checked: {reason}", candidate.score))
        return CheckReport(
            candidates=tuple(out),
            goal=run.goal,
            context_error=run.context_error,
            setup_time=(run.ready_at - started) if run.ready_at is not None else 0.0,
            total_time=now - started,
            workers=run.workers,
            lean_requests=run.counts["preamble"] + run.counts["declaration"] + run.counts["tactic"],
            preamble_requests=run.counts["preamble"],
            declaration_requests=run.counts["declaration"],
            tactic_requests=run.counts["tactic"],
            preamble_reused=run.counts["reused"],
            declaration_reused=run.counts["declaration_reused"],
            timed_out=timed_out,
        )

    @staticmethod
    def _unchecked(candidates: Sequence[CandidateLike], reason: str, started: float) -> CheckReport:
        return CheckReport(
            tuple(CheckedCandidate(c.text, UNCHECKED, (), f"not checked: {reason}", c.score) for c in candidates),
            context_error=reason, total_time=time.monotonic() - started)


def check_candidates(
    pool: ReplPool,
    candidates: Sequence[CandidateLike],
    *,
    context: str | None = None,
    source: str | None = None,
    position: tuple[int, int] | None = None,
    budget: float = 5.0,
    heartbeats: int = 0,
) -> CheckReport:
    """One-shot helper: build the goal context and check; context problems give ``unchecked``."""
    try:
        goal_context = build_goal_context(context, source, position, heartbeats)
    except ContextError as exc:
        return TacticChecker._unchecked(candidates, str(exc), time.monotonic())
    return TacticChecker(pool, budget=budget).check(goal_context, candidates)
