"""Check candidate tactics against the goal at an ``llmstep`` call, in parallel.

The goal context (header, preamble, declaration cut at the call) is built by
:mod:`leanstep.check.source`; this module runs the candidates on it.

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

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from leanstep.check.source import GoalContext
from leanstep.check.verdict import TextEnum
from leanstep.repl.pool import GoalState, PoolClosed, PoolOverloaded, Priority, ReplPool, Worker
from leanstep.repl.process import ReplError, ReplTimeout
from leanstep.repl.protocol import (
    COMPLETED,
    LEAN_ERROR_PREFIX,
    CommandRequest,
    CommandResponse,
    ErrorResponse,
    ProtocolError,
    Response,
    TacticRequest,
    TacticResponse,
)

log = logging.getLogger(__name__)


class CandidateStatus(TextEnum):
    """What checking found out about one candidate (see Classification above); declared best first."""

    CLOSES_GOAL = "closes_goal"
    VALID = "valid"
    UNCHECKED = "unchecked"
    INVALID = "invalid"


MAX_ATTEMPTS = 3  # REPLs one lane may go through (a crash or a lost process costs one)

# --------------------------------------------------------------------------- #
# Results


class CandidateLike(Protocol):
    """What checking needs of a candidate (a generator's ``Candidate``, or a test's)."""

    @property
    def text(self) -> str: ...

    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class CheckedCandidate:
    """One candidate and its verdict; ``time`` is seconds of REPL time spent on it."""

    text: str
    status: CandidateStatus
    goals: tuple[str, ...] = ()
    message: str | None = None
    score: float = 0.0
    time: float = 0.0
    progress: bool = True  # False: ran without error but left the goal unchanged


@dataclass(frozen=True)
class GoalReading:
    """The goal at a call as Lean states it (``goal``), or why it could not be read (``error``)."""

    goal: str | None
    error: str | None
    seconds: float


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


def classify(response: Response, text: str, score: float, elapsed: float, goal: str | None) -> CheckedCandidate:
    """Turn a REPL answer to a tactic into a verdict (both error channels, protocol §5.9-5.10)."""

    def invalid(message: str, goals: tuple[str, ...] = ()) -> CheckedCandidate:
        return CheckedCandidate(text, CandidateStatus.INVALID, goals, message, score, elapsed)

    if isinstance(response, ErrorResponse):
        return invalid(response.message.removeprefix(LEAN_ERROR_PREFIX).strip() or "Lean error")
    if not isinstance(response, TacticResponse):
        return invalid(f"unexpected REPL answer {type(response).__name__}")
    errors = [m.data for m in response.messages if m.is_error]
    goals = tuple(response.goals)
    if errors:
        return invalid("\n".join(errors), goals)
    if response.sorries:
        return invalid("the tactic uses `sorry`", goals)
    if response.proof_status == COMPLETED:
        return CheckedCandidate(text, CandidateStatus.CLOSES_GOAL, (), None, score, elapsed)
    if not goals:
        return invalid(f"proof not accepted: {response.proof_status}")
    if "sorry" in response.proof_status:
        return invalid("the tactic uses `sorry`", goals)
    progress = not (goal is not None and goals == (goal,))
    message = None if progress else "no progress: the goal is unchanged"
    return CheckedCandidate(text, CandidateStatus.VALID, goals, message, score, elapsed, progress)


def _unchecked(candidate: CandidateLike, reason: str, elapsed: float = 0.0) -> CheckedCandidate:
    return CheckedCandidate(candidate.text, CandidateStatus.UNCHECKED, (), f"not checked: {reason}", candidate.score,
                            elapsed)


def _not_ready(budget: float) -> str:
    return (f"the goal context was not ready within the checking budget ({budget:g} s); "
            "it keeps elaborating and later calls reuse it")


# --------------------------------------------------------------------------- #
# The checker


class _Run:
    """Shared state of one check: a work queue of candidate indices and the verdicts so far.

    A run without candidates only reads the goal: its work is done once the goal is known.
    """

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
            if self.context_error is not None or self.remaining() <= 0:
                return False
            if not self.candidates:
                return self.goal is None
            return self.next_index < len(self.candidates)

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

    def totals(self) -> dict[str, int]:
        """Cumulative REPL requests of this checker by kind (``preamble``, ``declaration``, ``tactic``)
        and preamble cache hits (``reused``), background work included."""
        return self._totals.snapshot()

    def read_goal(self, context: GoalContext, budget: float | None = None) -> GoalReading:
        """The goal at the call as Lean states it, read within ``budget`` seconds.

        For callers that know where the call is but not its goal. The proof
        state stays cached on the REPL that built it, so checking candidates
        on the same context right after costs no second declaration there.
        """
        started = time.monotonic()
        budget = self.budget if budget is None else budget
        run = _Run((), started + budget, budget, self._totals)
        with run.cond:
            run.lanes_alive = 1
        threading.Thread(target=self._lane, args=(run, context), name="goal-lane", daemon=True).start()
        with run.cond:
            while run.goal is None and run.context_error is None and run.lanes_alive > 0:
                remaining = run.remaining()
                if remaining <= 0:
                    break
                run.cond.wait(remaining)
            if run.goal is not None:
                return GoalReading(run.goal, None, time.monotonic() - started)
            error = run.context_error or run.failure or _not_ready(budget)
            return GoalReading(None, error, time.monotonic() - started)

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
                run.put(index, CheckedCandidate(candidate.text, CandidateStatus.INVALID, (), f"not sent to Lean: {exc}",
                                                candidate.score, 0.0))
                continue
            run.count(tactic=1)
            try:
                response = worker.run(request, max(limit, 0.001))
            except ReplTimeout:
                elapsed = time.monotonic() - t0
                run.put(index, CheckedCandidate(
                    candidate.text, CandidateStatus.INVALID, (),
                    f"timeout: still running after {elapsed:.2f} s (checking budget {run.budget:g} s); "
                    "its REPL was stopped", candidate.score, elapsed))
                return run.has_work()
            except ReplError as exc:
                if self.pool.closed:  # the shutdown killed the REPL: the tactic is not at fault
                    run.put(index, _unchecked(candidate, "server shutting down", time.monotonic() - t0))
                    return False
                run.put(index, CheckedCandidate(candidate.text, CandidateStatus.INVALID, (),
                                                f"the REPL crashed on this tactic: {exc}", candidate.score,
                                                time.monotonic() - t0))
                return True
            run.put(index, classify(response, candidate.text, candidate.score, time.monotonic() - t0, run.goal))

    def _prepare(self, run: _Run, context: GoalContext, worker: Worker) -> int | None:
        """The proof-state id of the call's ``sorry`` on this worker, or None (context error recorded)."""
        errors = [m.data for m in worker.header_messages if m.is_error]
        if errors:
            self._context_error(run, f"the header failed: {errors[0].splitlines()[0]}")
            return None
        known = worker.goal_state(context.key) if self.cache_preamble else None
        if known is not None:  # the same call in the same file again (e.g. Lean re-elaborated it)
            run.count(declaration_reused=1)
            self._ready(run, known.goal)
            return known.proof_state
        timeout = max(run.remaining(), self.prepare_timeout)
        env = worker.header_env
        response: Response
        if context.preamble.strip():
            if self.cache_preamble:
                elaborated = worker.preamble(context.preamble, timeout)
                run.count(**({"reused": 1} if elaborated.cached else {"preamble": 1}))
                response = elaborated.response
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
                    worker.remember_goal_state(context.key, GoalState(sorry.proof_state, sorry.goal))
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
            run.cond.notify_all()

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
                out.append(_unchecked(candidate, run.context_error))
            elif index in run.running:
                timed_out += 1
                elapsed = now - run.running[index]
                out.append(CheckedCandidate(
                    candidate.text, CandidateStatus.INVALID, (),
                    f"timeout: still running after {elapsed:.2f} s when the checking budget ({run.budget:g} s) ended; "
                    "its REPL is being stopped", candidate.score, elapsed))
            else:
                if run.ready_at is None:
                    reason = run.failure or _not_ready(run.budget)
                else:
                    reason = run.failure or f"the checking budget ({run.budget:g} s) ended before this candidate ran"
                out.append(_unchecked(candidate, reason))
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
        return CheckReport(tuple(_unchecked(c, reason) for c in candidates), context_error=reason,
                           total_time=time.monotonic() - started)
