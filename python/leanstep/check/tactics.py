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

Proof paths
    A target may also be a :class:`ProofPath`: the goal at the ``sorry``, then
    tactics already run on it (a proof session's state). A lane builds it on
    its REPL from the deepest prefix that REPL already holds (``Worker.goal_state``
    keys name recipes, never REPL ids), replaying only the tactics after it, and
    keeps every state it passes; with ``keep_states`` the states the candidates
    reach are kept too, so stepping on from any of them costs one tactic.

Lost REPLs
    A candidate whose REPL is lost while it runs (a crash, a kill from outside)
    is tried once more on another REPL: the loss may not be the tactic's doing.
    Lost twice, it is ``invalid``. A timeout is not retried.

Classification (docs/repl-protocol.md §5.9-5.10)
    ``closes_goal``: ``proofStatus == "Completed"`` and no error message;
    ``valid``: no error, goals remain, no ``sorry`` used; ``invalid``: a thrown
    ``{"message": "Lean error:..."}``, an error message Lean recovered from,
    a ``sorry``, a proof the kernel rejected, or a timeout; ``unchecked``: no
    goal context (nothing to check against, the budget ended before the
    candidate started, no REPL was free, or the server shut down mid-check). A
    request never fails because of checking.

    REPLs older than v4.19.0 send no ``proofStatus``: nothing re-checked the
    proof, so a candidate that leaves no goal, logs no error, reports no
    ``sorry`` and has no ``sorry``/``admit``/``sorryAx`` token is ``closes_goal``
    with a message saying the kernel did not see it (REPLs before v4.5.0 do not
    even report tactic-mode sorries, hence the token check).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from leanstep.check.lexer import tokens
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
    Message,
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


# REPL requests by kind, and cache hits: preambles and goal states reused; tactics replayed to rebuild a path
COUNT_KEYS = ("preamble", "declaration", "tactic", "replayed", "reused", "declaration_reused")
MAX_ATTEMPTS = 3  # REPLs one lane may go through (a crash or a lost process costs one)
LOST_REPL_TRIES = 2  # runs of one candidate whose REPL was lost under it, before it is invalid

# --------------------------------------------------------------------------- #
# Results


class CandidateLike(Protocol):
    """What checking needs of a candidate (a generator's ``Candidate``, or a test's)."""

    @property
    def text(self) -> str: ...

    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class ProofPath:
    """A proof state named by how to build it: the goal at ``context``'s ``sorry``, then ``tactics`` in order.

    Lean's states are immutable and a REPL's proof-state ids are private to it, so
    a state is identified by its recipe: :attr:`key` is the same on every REPL,
    and a REPL that built the state keeps it under that key.
    """

    context: GoalContext
    tactics: tuple[str, ...] = ()

    def then(self, tactic: str) -> ProofPath:
        return ProofPath(self.context, (*self.tactics, tactic))

    @property
    def key(self) -> str:
        return self.keys()[-1]

    def keys(self) -> list[str]:
        """The key of every prefix: ``keys()[k]`` names the state after the first ``k`` tactics.

        The goal's own key is the goal context's, so a session's root and an editor's call
        at the same place share one proof state.
        """
        keys = [self.context.key]
        for tactic in self.tactics:
            keys.append(hashlib.sha256(f"{keys[-1]}\n{tactic}".encode()).hexdigest())
        return keys


@dataclass(frozen=True)
class CheckedCandidate:
    """One candidate and its verdict; ``time`` is seconds of REPL time spent on it.

    ``messages``: everything Lean said about it (infos such as ``Try this`` included);
    ``message``: the error, or why it was not checked. ``worker``: the id of the worker
    whose REPL ran it last (None when it never ran).
    """

    text: str
    status: CandidateStatus
    goals: tuple[str, ...] = ()
    message: str | None = None
    score: float = 0.0
    time: float = 0.0
    progress: bool = True  # False: ran without error but left the goal unchanged
    messages: tuple[Message, ...] = ()
    worker: int | None = None


@dataclass(frozen=True)
class GoalReading:
    """The goal at a call as Lean states it (``goal``), or why it could not be read (``error``).

    ``retryable``: the error is the moment's (no REPL free, the budget ended, a lost REPL),
    not the context's. ``worker``: the id of the worker that read it, which now holds its state.
    """

    goal: str | None
    error: str | None
    seconds: float
    retryable: bool = False
    worker: int | None = None


@dataclass(frozen=True)
class CheckReport:
    """All candidates (in input order) plus what it cost.

    ``context_error``: why nothing could be checked (None when a proof state
    was reached). ``setup_time``: seconds until the first REPL had the proof
    state. Request counts are REPL requests actually sent during this check;
    ``replayed_tactics`` are those sent to rebuild a :class:`ProofPath`'s state.
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
    replayed_tactics: int = 0


UNVALIDATED = ("no goals remain, but this REPL (older than v4.19.0) does not validate proofs in tactic mode: "
               "the kernel has not checked it")


def _has_sorry_token(text: str) -> bool:
    """Whether the tactic text has the keyword ``sorry`` or ``admit``, or names ``sorryAx``, as a whole token.

    ``sorry_lemma``, ``h.sorry``, ``«sorry»``, comments and strings are not.
    """
    return any(tok.kind == "ident" and not tok.quoted
               and (tok.text in ("sorry", "admit") or tok.text.rsplit(".", 1)[-1] == "sorryAx")
               for tok in tokens(text))


def classify(response: Response, text: str, score: float, elapsed: float,
             goals_before: tuple[str, ...] | None) -> CheckedCandidate:
    """Turn a REPL answer to a tactic into a verdict (both error channels, protocol §5.9-5.10).

    ``goals_before``: the goals the tactic ran on, to tell a tactic that changed nothing.
    """
    messages = response.messages if isinstance(response, TacticResponse) else ()

    def invalid(message: str, goals: tuple[str, ...] = ()) -> CheckedCandidate:
        return CheckedCandidate(text, CandidateStatus.INVALID, goals, message, score, elapsed, messages=messages)

    if isinstance(response, ErrorResponse):
        return invalid(response.message.removeprefix(LEAN_ERROR_PREFIX).strip() or "Lean error")
    if not isinstance(response, TacticResponse):
        return invalid(f"unexpected REPL answer {type(response).__name__}")
    errors = [m.data for m in response.messages if m.is_error]
    goals = tuple(response.goals)
    if errors:
        return invalid("\n".join(errors), goals)
    if response.sorries or _has_sorry_token(text):
        return invalid("the tactic uses `sorry`", goals)
    status = response.proof_status
    if status == COMPLETED:
        return CheckedCandidate(text, CandidateStatus.CLOSES_GOAL, (), None, score, elapsed, messages=messages)
    if not goals and status is None:
        return CheckedCandidate(text, CandidateStatus.CLOSES_GOAL, (), UNVALIDATED, score, elapsed, messages=messages)
    if not goals:
        return invalid(f"proof not accepted: {status}")
    if status is not None and "sorry" in status:
        return invalid("the tactic uses `sorry`", goals)
    progress = goals != goals_before
    message = None if progress else "no progress: the goal is unchanged"
    return CheckedCandidate(text, CandidateStatus.VALID, goals, message, score, elapsed, progress, messages)


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
                 totals: _Totals | None = None, *, keep_states: bool = False) -> None:
        self.totals = totals
        self.candidates = list(candidates)
        self.deadline = deadline
        self.budget = budget
        self.keep_states = keep_states
        self.cond = threading.Condition()
        self.next_index = 0
        self.retry: deque[int] = deque()  # candidates whose REPL was lost under them, to run again
        self.lost: dict[int, int] = {}  # candidate index -> REPLs lost while it ran
        self.results: dict[int, CheckedCandidate] = {}
        self.running: dict[int, float] = {}
        self.context_error: str | None = None
        self.goal: str | None = None
        self.ready_at: float | None = None
        self.ready_worker: int | None = None  # the worker that reached the state first
        self.lanes_alive = 0
        self.workers = 0
        self.counts = dict.fromkeys(COUNT_KEYS, 0)
        self.failure: str | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def finished(self) -> bool:
        return len(self.results) == len(self.candidates) or self.context_error is not None

    def take(self) -> int | None:
        with self.cond:
            if self.context_error is not None or self.remaining() <= 0:
                return None
            if self.retry:
                index = self.retry.popleft()
            elif self.next_index < len(self.candidates):
                index = self.next_index
                self.next_index += 1
            else:
                return None
            self.running[index] = time.monotonic()
            return index

    def has_work(self) -> bool:
        with self.cond:
            if self.context_error is not None or self.remaining() <= 0:
                return False
            if not self.candidates:
                return self.goal is None
            return bool(self.retry) or self.next_index < len(self.candidates)

    def lost_under(self, index: int) -> bool:
        """Record that ``index``'s REPL was lost while it ran; True when it gets another try."""
        with self.cond:
            self.lost[index] = self.lost.get(index, 0) + 1
            if self.lost[index] >= LOST_REPL_TRIES:
                return False
            self.running.pop(index, None)
            self.retry.append(index)
            return True

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
        self._counts = dict.fromkeys(COUNT_KEYS, 0)

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

    def read_goal(self, target: GoalContext | ProofPath, budget: float | None = None, *,
                  prefer: int | None = None) -> GoalReading:
        """The goal at the call (or the goals of a path's state) as Lean states it, read within ``budget`` s.

        For callers that know where the call is but not its goal. The proof
        state stays cached on the REPL that built it, so checking candidates
        on the same context right after costs no second declaration there.
        """
        started = time.monotonic()
        budget = self.budget if budget is None else budget
        run = _Run((), started + budget, budget, self._totals)
        with run.cond:
            run.lanes_alive = 1
        threading.Thread(target=self._lane, args=(run, _as_path(target), prefer), name="goal-lane",
                         daemon=True).start()
        with run.cond:
            while run.goal is None and run.context_error is None and run.lanes_alive > 0:
                remaining = run.remaining()
                if remaining <= 0:
                    break
                run.cond.wait(remaining)
            if run.goal is not None:
                return GoalReading(run.goal, None, time.monotonic() - started, worker=run.ready_worker)
            if run.context_error is not None:
                return GoalReading(None, run.context_error, time.monotonic() - started)
            return GoalReading(None, run.failure or _not_ready(budget), time.monotonic() - started, retryable=True)

    def check(self, target: GoalContext | ProofPath | None, candidates: Sequence[CandidateLike],
              budget: float | None = None, *, prefer: int | None = None, keep_states: bool = False) -> CheckReport:
        """Verdicts for every candidate (input order), returned within ``budget`` seconds.

        ``prefer``: the id of a worker that likely holds the target's state (a session's pinned
        REPL); the first lane waits for it briefly (``ReplPool.acquire``). ``keep_states``: the
        REPLs keep the states that valid candidates reach, under their :class:`ProofPath` keys.
        """
        started = time.monotonic()
        budget = self.budget if budget is None else budget
        if not candidates:
            return CheckReport((), total_time=0.0)
        if target is None:
            return self._unchecked(candidates, "no goal context", started)
        path = _as_path(target)
        run = _Run(candidates, started + budget, budget, self._totals, keep_states=keep_states)
        lanes = min(len(candidates), self.max_workers or self.pool.settings.max_repls)
        with run.cond:
            run.lanes_alive = lanes
        for lane in range(lanes):
            threading.Thread(target=self._lane, args=(run, path, prefer if lane == 0 else None),
                             name=f"check-lane-{lane}", daemon=True).start()
        with run.cond:
            while not run.finished() and run.lanes_alive > 0:
                remaining = run.remaining()
                if remaining <= 0:
                    break
                run.cond.wait(remaining)
            return self._report(run, started)

    # -- one lane: a REPL that builds the proof state and takes candidates ----

    def _lane(self, run: _Run, path: ProofPath, prefer: int | None) -> None:
        attempts = 0
        try:
            while run.has_work() and attempts < MAX_ATTEMPTS:
                attempts += 1
                try:
                    with self.pool.acquire(path.context.header, self.priority, wait=max(run.remaining(), 0.0),
                                           prefer=prefer) as worker:
                        if not self._serve(run, path, worker):
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

    def _serve(self, run: _Run, path: ProofPath, worker: Worker) -> bool:
        """Prepare the proof state on ``worker`` and check candidates until none are left.

        Returns False when the lane should stop, True to acquire another worker
        (this one was lost) and go on.
        """
        if not run.has_work():
            return False  # the other lanes took every candidate while this one waited for a REPL
        with run.cond:
            run.workers += 1
        state = self._prepare(run, path, worker)
        if state is None:
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
                request = TacticRequest(candidate.text, state.proof_state)
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
                    "its REPL was stopped", candidate.score, elapsed, worker=worker.id))
                return run.has_work()
            except ReplError as exc:
                if self.pool.closed:  # the shutdown killed the REPL: the tactic is not at fault
                    run.put(index, _unchecked(candidate, "server shutting down", time.monotonic() - t0))
                    return False
                if not run.lost_under(index):
                    run.put(index, CheckedCandidate(
                        candidate.text, CandidateStatus.INVALID, (),
                        f"the REPL crashed on this tactic {LOST_REPL_TRIES} times, last: {exc}", candidate.score,
                        time.monotonic() - t0, worker=worker.id))
                return True
            verdict = classify(response, candidate.text, candidate.score, time.monotonic() - t0, state.goals)
            if run.keep_states and isinstance(response, TacticResponse) \
                    and verdict.status in (CandidateStatus.VALID, CandidateStatus.CLOSES_GOAL):
                worker.remember_goal_state(path.then(candidate.text).key,
                                           GoalState(response.proof_state, tuple(response.goals)))
            run.put(index, replace(verdict, worker=worker.id))

    def _prepare(self, run: _Run, path: ProofPath, worker: Worker) -> GoalState | None:
        """The proof state of ``path`` on this worker, or None (context error recorded).

        Starts from the deepest state of the path this REPL already holds; else builds the goal
        at the ``sorry`` (header env, cached preamble, declaration); then replays the remaining
        tactics, keeping each state it passes.
        """
        errors = [m.data for m in worker.header_messages if m.is_error]
        if errors:
            self._context_error(run, f"the header failed: {errors[0].splitlines()[0]}")
            return None
        keys = path.keys()
        depth, state = len(keys) - 1, None
        if self.cache_preamble:
            while depth >= 0 and (state := worker.goal_state(keys[depth])) is None:
                depth -= 1
        if state is not None:  # the same call in the same file again, or a session's state
            run.count(declaration_reused=1)
        else:
            depth, state = 0, self._build_goal(run, path.context, worker)
            if state is None:
                return None
        for step in range(depth, len(path.tactics)):
            state = self._replay(run, path.tactics[step], step, keys[step + 1], state, worker)
            if state is None:
                return None
        self._ready(run, state.goals, worker.id)
        return state

    def _build_goal(self, run: _Run, context: GoalContext, worker: Worker) -> GoalState | None:
        """The goal at the context's ``sorry``, elaborated on this worker (and kept, when caching)."""
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
        found: GoalState | None = None
        for sorry in response.sorries:
            if sorry.proof_state is None or sorry.pos is None:
                continue
            state = GoalState(sorry.proof_state, (sorry.goal,))
            if self.cache_preamble:  # every sorry of the declaration: a session starts from each
                worker.remember_goal_state(replace(context, sorry_pos=sorry.pos).key, state)
            if sorry.pos == context.sorry_pos:
                found = state
        if found is not None:
            return found
        errors = [f"{m.pos.line}:{m.pos.column}: {m.data}" for m in response.messages if m.is_error]
        detail = f"; Lean said: {errors[0]}" if errors else ""
        self._context_error(run, f"no goal found at the call (line {context.sorry_pos.line}, column "
                                 f"{context.sorry_pos.column} of the declaration){detail}")
        return None

    def _replay(self, run: _Run, tactic: str, step: int, key: str, state: GoalState,
                worker: Worker) -> GoalState | None:
        """Run a path's tactic number ``step`` (0-based) on ``state``, the one before it; keep the result as ``key``.

        A tactic that once succeeded and now fails means the path cannot be rebuilt here: a
        context error, so its candidates are answered ``unchecked`` with the reason.
        """
        run.count(replayed=1)
        response = worker.run(TacticRequest(tactic, state.proof_state), max(run.remaining(), self.prepare_timeout))
        verdict = classify(response, tactic, 0.0, 0.0, state.goals)
        if not isinstance(response, TacticResponse) or verdict.status == CandidateStatus.INVALID:
            self._context_error(run, f"the state could not be rebuilt: tactic {step + 1} of its path, "
                                     f"{tactic[:80]!r}, now fails: {verdict.message}")
            return None
        rebuilt = GoalState(response.proof_state, tuple(response.goals))
        if self.cache_preamble:
            worker.remember_goal_state(key, rebuilt)
        return rebuilt

    @staticmethod
    def _ready(run: _Run, goals: tuple[str, ...], worker: int) -> None:
        with run.cond:
            if run.goal is None:
                run.goal = "\n\n".join(goals)
                run.ready_worker = worker
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
            lean_requests=sum(run.counts[k] for k in ("preamble", "declaration", "tactic", "replayed")),
            preamble_requests=run.counts["preamble"],
            declaration_requests=run.counts["declaration"],
            tactic_requests=run.counts["tactic"],
            preamble_reused=run.counts["reused"],
            declaration_reused=run.counts["declaration_reused"],
            timed_out=timed_out,
            replayed_tactics=run.counts["replayed"],
        )

    @staticmethod
    def _unchecked(candidates: Sequence[CandidateLike], reason: str, started: float) -> CheckReport:
        return CheckReport(tuple(_unchecked(c, reason) for c in candidates), context_error=reason,
                           total_time=time.monotonic() - started)


def _as_path(target: GoalContext | ProofPath) -> ProofPath:
    return target if isinstance(target, ProofPath) else ProofPath(target)
