"""Proof sessions: a tree of immutable proof states that an agent (or a search) steps through.

A session starts from an origin: a Lean file whose ``sorry``s are the goals
(:class:`FromCode`), the goal at a position in a file, read as ``/suggest``
reads it (:class:`FromPosition`), or a theorem statement under a header
(:class:`FromStatement`). Each goal is a root state. Running a tactic on a
state never changes it: a tactic that Lean accepts makes a new state, a child
of the one it ran on, so an agent branches by stepping from any state it
holds, and concurrent steps cannot interfere. The same tactic on the same state
is the same child, answered from the tree without Lean. :meth:`SessionService.attempt`
runs many tactics on one state at once over several REPLs (the ``/suggest``
checker, :class:`~leanstep.check.tactics.TacticChecker`).

Where states live
    A state is identified by how it is built, a :class:`~leanstep.check.tactics.ProofPath`
    (the root's goal context, then the tactics from the root), never by a REPL's
    proof-state id, which means nothing outside one process. REPLs keep the states
    they build under those recipes (``Worker.goal_state``). A session pins the
    REPL that ran its last step and asks the pool for that one first
    (``ReplPool.acquire(prefer=...)``). When it is gone (crashed, killed by
    another tactic's timeout, recycled for uses or memory, evicted for another
    header), the step runs on another REPL, which rebuilds the state from the
    deepest prefix of its path it holds (at worst: preamble, declaration, then
    the path's tactics), and the session pins that one. The agent sees the same
    state ids, goals and verdicts; only the latency differs.

Recycling
    A REPL that holds sessions' states is recycled like any other. The REPL never
    frees a proof state, so those states are what makes it grow; sparing it would
    let one long session grow it without bound, while a replay costs one
    declaration and the path's tactics, on a REPL the pool has already refilled.

Limits (each one a setting, each refusal a :class:`SessionError` with the limit in its message)
    Sessions idle for ``ttl`` seconds are closed (checked on every call, against an
    injectable clock; a session in the middle of a step never expires). At most
    ``max_sessions`` are open on the server and ``max_per_owner`` per owner; at most
    ``max_states`` states in one session (a step reserves room for the states it may
    add before it runs), at most ``max_tactics`` tactics in one attempt.

Owners
    Every call names its owner (the server derives it from the request's API key).
    A session exists only for its owner: another owner gets :class:`SessionNotFound`,
    the same answer as for an id that never existed, so ids cannot be probed. Ids
    are 144 random bits.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from leanstep.check.source import (
    ContextError,
    GoalContext,
    goal_context_from_source,
    goal_context_of_statement,
    goal_contexts_at_sorries,
)
from leanstep.check.tactics import CandidateStatus, CheckedCandidate, ProofPath, TacticChecker
from leanstep.check.verdict import TextEnum
from leanstep.limits import AppliedTimeout, LimitError, bounded_timeout
from leanstep.repl.protocol import Message

SESSION_ID_BYTES = 18  # 144 bits, 24 URL-safe characters
TIMEOUT_FLAG = "--session-timeout"

# --------------------------------------------------------------------------- #
# Origins


@dataclass(frozen=True)
class FromCode:
    """A Lean file (imports, then declarations) whose ``sorry``s become the root states, in order."""

    code: str


@dataclass(frozen=True)
class FromPosition:
    """The goal at a position of a file, as ``/suggest`` reads it: the text from there to the end of the
    declaration is dropped. ``line`` is 1-based, ``column`` 0-based in code points."""

    source: str
    line: int
    column: int


@dataclass(frozen=True)
class FromStatement:
    """A statement (``theorem name binders : type``) under ``header``, its import lines: one root state."""

    statement: str
    header: str = ""


Origin = FromCode | FromPosition | FromStatement


# --------------------------------------------------------------------------- #
# What callers see


class StateStatus(TextEnum):
    OPEN = "open"  # goals remain
    PROVED = "proved"  # no goal remains: the tactics from its root prove the root's goal


@dataclass(frozen=True)
class StateView:
    """One state of the tree: its goals and how it was reached (``parent``/``tactic`` None for a root)."""

    id: int
    goals: tuple[str, ...]
    status: StateStatus
    parent: int | None = None
    tactic: str | None = None
    depth: int = 0


@dataclass(frozen=True)
class SessionView:
    """A session's tree: ``roots`` are the ids of its root states, ``states`` every state by id."""

    id: str
    roots: tuple[int, ...]
    states: tuple[StateView, ...]
    expires_in: float  # seconds of idleness left before the session is closed


@dataclass(frozen=True)
class SessionSummary:
    """One open session in an owner's list: enough for an agent to find a session again without its tree."""

    id: str
    roots: int
    states: int
    proved: int  # states with no goal left
    expires_in: float


@dataclass(frozen=True)
class StepResult:
    """One tactic run on a state.

    ``status`` is the checker's: ``closes_goal`` (no goal remains), ``valid`` (goals
    remain), ``invalid`` (Lean refused it; ``message`` says why) or ``unchecked`` (it did
    not run: the budget ended or no REPL was free; ``message`` says which). ``state`` is
    the new state's id for ``closes_goal`` and ``valid``, else None. ``messages`` are all
    Lean said (``Try this`` infos included); ``time`` the seconds it ran.
    """

    tactic: str
    status: CandidateStatus
    state: int | None
    goals: tuple[str, ...] = ()
    message: str | None = None
    messages: tuple[Message, ...] = ()
    time: float = 0.0


@dataclass(frozen=True)
class ProofScript:
    """The tactics from a root state to a proved state, in order."""

    root: int
    state: int
    tactics: tuple[str, ...]

    @property
    def text(self) -> str:
        """One tactic per line (a tactic's own lines follow it); indent every line to the ``sorry``'s column to
        put it in the file in place of the ``sorry``."""
        return "\n".join(self.tactics)


@dataclass(frozen=True)
class SessionStats:
    open: int
    started: int
    closed: int
    expired: int
    steps: int  # tactics run on a REPL (answers from the tree not counted)
    replayed_tactics: int  # tactics run again to rebuild states on a REPL that did not hold them


@dataclass(frozen=True)
class SessionLimits:
    ttl: float = 600.0
    max_sessions: int = 256
    max_per_owner: int = 32
    max_states: int = 1000
    max_tactics: int = 64
    timeout: float = 30.0  # default and most seconds of one start, step or attempt (a request may ask less)
    min_timeout: float = 1.0  # least a request may ask for


# --------------------------------------------------------------------------- #
# Errors: each names what was wrong; the HTTP layer maps them to a status


class SessionError(Exception):
    """A call the service refuses; ``reason`` is a stable code."""

    reason = "session_error"


class SessionNotFound(SessionError):
    """No such session for this owner: never started, closed, expired, or another owner's."""

    reason = "session_not_found"


class StateNotFound(SessionError):
    reason = "state_not_found"


class SessionLimitReached(SessionError):
    """The server's or the owner's cap on open sessions."""

    reason = "session_limit"


class StateLimitReached(SessionError):
    """The session holds (or would hold, after this call) more states than allowed."""

    reason = "state_limit"


class BadRequest(SessionError):
    """The origin has no goal Lean can reach, or a call's arguments are wrong (too many tactics, an empty one)."""

    reason = "bad_request"


class NotProved(SessionError):
    """A proof was asked for a state that still has goals."""

    reason = "not_proved"


class StateUnreachable(SessionError):
    """The state can no longer be rebuilt: its path does not replay on a new REPL (Lean answers otherwise now)."""

    reason = "state_unreachable"


class Unavailable(SessionError):
    """No REPL could do the work within the call's budget (all busy, or starting); retry later."""

    reason = "unavailable"


def check_attempt(tactics: Sequence[str], max_tactics: int) -> None:
    """Raises :class:`BadRequest` for tactics no attempt runs: none, more than ``max_tactics``
    (``--max-attempt-tactics``), or an empty one; every multi-attempt (on a session state or at a place in a file)
    is held to this."""
    if not tactics:
        raise BadRequest("no tactic to run")
    if len(tactics) > max_tactics:
        raise BadRequest(f"{len(tactics)} tactics in one attempt, more than the {max_tactics} "
                         "allowed (--max-attempt-tactics)")
    for index, tactic in enumerate(tactics):
        if not isinstance(tactic, str) or not tactic.strip():
            raise BadRequest(f"tactic {index} is empty")


# --------------------------------------------------------------------------- #
# The service


@dataclass
class _Node:
    path: ProofPath
    goals: tuple[str, ...]
    parent: int | None
    result: StepResult | None  # the step that made it (None for a root)

    @property
    def status(self) -> StateStatus:
        return StateStatus.OPEN if self.goals else StateStatus.PROVED


@dataclass
class _Session:
    id: str
    owner: str
    nodes: list[_Node]
    roots: tuple[int, ...]
    last_used: float
    pin: int | None  # the worker that ran the last step; it holds the states it built
    children: dict[tuple[int, str], int] = field(default_factory=dict)  # (state, tactic) -> child
    reserved: int = 0  # state slots held by steps in flight
    busy: int = 0  # calls in flight; a busy session does not expire
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionService:
    """Thread-safe. ``checker`` runs the tactics (its pool holds the states); ``clock`` is for tests."""

    def __init__(self, checker: TacticChecker, limits: SessionLimits | None = None, *, heartbeats: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.checker = checker
        self.limits = limits or SessionLimits()
        self.heartbeats = heartbeats
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._starting: dict[str, int] = {}  # owner -> starts in flight (they hold a slot)
        self._counts = {"started": 0, "closed": 0, "expired": 0, "steps": 0, "replayed_tactics": 0}

    # -- public API ----------------------------------------------------------

    def applied_timeout(self, requested: float | None) -> AppliedTimeout:
        """The budget a call runs under: ``requested`` capped at the limit, the limit when None.

        Raises :class:`BadRequest` below the floor (a tiny budget only kills the REPL holding the states).
        """
        try:
            return bounded_timeout(requested, ceiling=self.limits.timeout, ceiling_flag=TIMEOUT_FLAG,
                                   floor=self.limits.min_timeout)
        except LimitError as exc:
            raise BadRequest(f"timeout: {exc}") from None

    def start(self, origin: Origin, owner: str, timeout: float | None = None) -> SessionView:
        """A new session whose roots are the origin's goals, as Lean states them."""
        budget = self.applied_timeout(timeout).seconds
        contexts = self._contexts(origin)
        if len(contexts) > self.limits.max_states:
            raise StateLimitReached(f"the code has {len(contexts)} `sorry`s, more than the "
                                    f"{self.limits.max_states} states a session may hold (--max-session-states)")
        self._reserve_start(owner)
        try:
            roots, pin = self._read_roots(contexts, budget)
            session = _Session(secrets.token_urlsafe(SESSION_ID_BYTES), owner, roots,
                               tuple(range(len(roots))), self._clock(), pin)
            with self._lock:
                self._sessions[session.id] = session
                self._counts["started"] += 1
        finally:
            with self._lock:
                self._starting[owner] -= 1
                if not self._starting[owner]:
                    del self._starting[owner]
        return self._view(session)

    def step(self, session: str, state: int, tactic: str, owner: str, timeout: float | None = None) -> StepResult:
        """Run ``tactic`` on ``state``; a tactic Lean accepts makes a new state (see :class:`StepResult`)."""
        return self.attempt(session, state, (tactic,), owner, timeout)[0]

    def attempt(self, session: str, state: int, tactics: Sequence[str], owner: str,
                timeout: float | None = None) -> tuple[StepResult, ...]:
        """Run every tactic on ``state``, in parallel over the pool's REPLs; results in the given order."""
        budget = self.applied_timeout(timeout).seconds
        tactics = tuple(tactics)
        check_attempt(tactics, self.limits.max_tactics)
        with self._use(session, owner) as entry:
            return self._attempt(entry, state, tactics, budget)

    def get(self, session: str, owner: str) -> SessionView:
        with self._use(session, owner) as entry:
            return self._view(entry)

    def owned(self, owner: str) -> tuple[SessionSummary, ...]:
        """``owner``'s open sessions, oldest first (an agent that lost its ids finds them here; none of another's)."""
        with self._lock:
            self._expire()
            entries = [s for s in self._sessions.values() if s.owner == owner]
        return tuple(self._summary(entry) for entry in entries)

    def proof(self, session: str, state: int, owner: str) -> ProofScript:
        """The tactics from ``state``'s root to it; :class:`NotProved` when goals remain there."""
        with self._use(session, owner) as entry, entry.lock:
            node = self._node(entry, state)
            if node.goals:
                raise NotProved(f"state {state} of session {entry.id} still has {len(node.goals)} goal(s); "
                                "a proof ends at a state whose status is `proved`")
            root = state
            while entry.nodes[root].parent is not None:
                root = entry.nodes[root].parent  # type: ignore[assignment]
            return ProofScript(root, state, node.path.tactics)

    def close(self, session: str, owner: str) -> None:
        with self._lock:
            self._owned(session, owner)
            del self._sessions[session]
            self._counts["closed"] += 1

    def stats(self) -> SessionStats:
        with self._lock:
            self._expire()
            return SessionStats(open=len(self._sessions), **self._counts)

    # -- starting ------------------------------------------------------------

    def _contexts(self, origin: Origin) -> list[GoalContext]:
        try:
            if isinstance(origin, FromCode):
                return goal_contexts_at_sorries(origin.code, self.heartbeats)
            if isinstance(origin, FromPosition):
                return [goal_context_from_source(origin.source, origin.line, origin.column, self.heartbeats)]
            return [goal_context_of_statement(origin.statement, origin.header, self.heartbeats)]
        except ContextError as exc:
            raise BadRequest(str(exc)) from None

    def _reserve_start(self, owner: str) -> None:
        """Hold a session slot for a start in flight, or refuse when the server or the owner is at its cap."""
        limits = self.limits
        with self._lock:
            self._expire()
            starting = sum(self._starting.values())
            if len(self._sessions) + starting >= limits.max_sessions:
                raise SessionLimitReached(f"the server holds its maximum of {limits.max_sessions} open sessions "
                                          "(--max-sessions); close one (DELETE) or retry once idle ones expire")
            mine = sum(1 for s in self._sessions.values() if s.owner == owner) + self._starting.get(owner, 0)
            if mine >= limits.max_per_owner:
                raise SessionLimitReached(f"this API key holds its maximum of {limits.max_per_owner} open sessions "
                                          "(--max-sessions-per-key); close one (DELETE) first")
            self._starting[owner] = self._starting.get(owner, 0) + 1

    def _read_roots(self, contexts: list[GoalContext], budget: float) -> tuple[list[_Node], int | None]:
        """Each context's goal, from Lean, within ``budget`` in all; the worker that read the last one.

        A declaration's ``sorry``s are all kept by the REPL that elaborated it, so the reads after
        the first prefer that REPL and cost nothing when they share its declaration.
        """
        deadline = time.monotonic() + budget
        roots: list[_Node] = []
        pin: int | None = None
        for number, context in enumerate(contexts, start=1):
            reading = self.checker.read_goal(context, max(deadline - time.monotonic(), 0.001), prefer=pin)
            if reading.goal is None:
                where = f"`sorry` number {number} of {len(contexts)}: " if len(contexts) > 1 else ""
                error = f"{where}{reading.error}"
                raise Unavailable(error) if reading.retryable else BadRequest(error)
            pin = reading.worker
            roots.append(_Node(ProofPath(context), (reading.goal,), None, None))
        return roots, pin

    # -- stepping ------------------------------------------------------------

    def _attempt(self, entry: _Session, state: int, tactics: tuple[str, ...], budget: float) -> tuple[StepResult, ...]:
        with entry.lock:
            node = self._node(entry, state)
            known = {t: entry.children[(state, t)] for t in tactics if (state, t) in entry.children}
            to_run = list(dict.fromkeys(t for t in tactics if t not in known))
            room = self.limits.max_states - len(entry.nodes) - entry.reserved
            if len(to_run) > room:
                raise StateLimitReached(
                    f"session {entry.id} holds {len(entry.nodes)} states (+{entry.reserved} in flight) of the "
                    f"{self.limits.max_states} allowed (--max-session-states); these {len(to_run)} tactics could "
                    f"add {len(to_run)} more. Start a new session from the state you want to keep")
            entry.reserved += len(to_run)
            pin = entry.pin
        try:
            ran = self._run(entry, node, to_run, budget, pin) if to_run else {}
        finally:
            with entry.lock:
                entry.reserved -= len(to_run)
        with entry.lock:
            results = []
            for tactic in tactics:
                if tactic in known:
                    results.append(self._known_answer(entry, known[tactic]))
                else:
                    results.append(self._record(entry, state, ran[tactic]))
            return tuple(results)

    def _run(self, entry: _Session, node: _Node, tactics: list[str], budget: float,
             pin: int | None) -> dict[str, CheckedCandidate]:
        """The checker's verdicts on ``node``'s state; re-pins the session where they ran."""
        report = self.checker.check(node.path, [_Tactic(t) for t in tactics], budget, prefer=pin, keep_states=True)
        with self._lock:
            self._counts["steps"] += report.tactic_requests
            self._counts["replayed_tactics"] += report.replayed_tactics
        if report.context_error is not None:
            raise StateUnreachable(f"state cannot be reached: {report.context_error}")
        workers = [c.worker for c in report.candidates if c.worker is not None]
        if workers:
            with entry.lock:
                entry.pin = pin if pin in workers else workers[0]
        return {c.text: c for c in report.candidates}

    def _record(self, entry: _Session, state: int, checked: CheckedCandidate) -> StepResult:
        """The answer to one tactic run on ``state``, adding its new state to the tree (lock held)."""
        result = StepResult(checked.text, checked.status, None, checked.goals, checked.message, checked.messages,
                            checked.time)
        if checked.status not in (CandidateStatus.CLOSES_GOAL, CandidateStatus.VALID):
            return result
        child = entry.children.get((state, checked.text))
        if child is not None:  # a concurrent step made it first: one tactic, one child
            return self._known_answer(entry, child)
        child = len(entry.nodes)
        result = replace(result, state=child)
        entry.children[(state, checked.text)] = child
        entry.nodes.append(_Node(entry.nodes[state].path.then(checked.text), checked.goals, state, result))
        return result

    @staticmethod
    def _known_answer(entry: _Session, child: int) -> StepResult:
        """A tactic already run on this state: its first answer, from the tree, in no time (lock held)."""
        result = entry.nodes[child].result
        assert result is not None  # only roots have none, and a root is no one's child
        return replace(result, time=0.0)

    # -- bookkeeping ---------------------------------------------------------

    def _node(self, entry: _Session, state: int) -> _Node:
        if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state < len(entry.nodes):
            raise StateNotFound(f"session {entry.id} has no state {state!r} (its states are 0 to "
                                f"{len(entry.nodes) - 1})")
        return entry.nodes[state]

    def _use(self, session: str, owner: str) -> _InUse:
        with self._lock:
            self._expire()
            entry = self._owned(session, owner)
            entry.busy += 1
            entry.last_used = self._clock()
        return _InUse(self, entry)

    def _owned(self, session: str, owner: str) -> _Session:
        """The open session ``session`` of ``owner`` (lock held): to anyone else, as if it did not exist."""
        entry = self._sessions.get(session)
        if entry is None or entry.owner != owner:
            raise SessionNotFound(f"no session {session[:40]!r}: it was never started with this API key, was "
                                  "closed, or expired after being idle (--session-ttl)")
        return entry

    def _done(self, entry: _Session) -> None:
        with self._lock:
            entry.busy -= 1
            entry.last_used = self._clock()

    def _expire(self) -> None:
        """Close the sessions idle for longer than the TTL (lock held)."""
        now = self._clock()
        for sid in [sid for sid, s in self._sessions.items() if not s.busy and now - s.last_used > self.limits.ttl]:
            del self._sessions[sid]
            self._counts["expired"] += 1

    def _view(self, entry: _Session) -> SessionView:
        with entry.lock:
            states = [StateView(sid, node.goals, node.status, node.parent,
                                node.path.tactics[-1] if node.path.tactics else None, len(node.path.tactics))
                      for sid, node in enumerate(entry.nodes)]
            return SessionView(entry.id, entry.roots, tuple(states), self._expires_in(entry))

    def _summary(self, entry: _Session) -> SessionSummary:
        with entry.lock:
            proved = sum(1 for node in entry.nodes if not node.goals)
            return SessionSummary(entry.id, len(entry.roots), len(entry.nodes), proved, self._expires_in(entry))

    def _expires_in(self, entry: _Session) -> float:
        """Seconds of idleness left before ``entry`` closes."""
        return max(0.0, self.limits.ttl - (self._clock() - entry.last_used))


class _InUse:
    """``with service._use(...) as session``: the session does not expire until the block ends."""

    def __init__(self, service: SessionService, entry: _Session) -> None:
        self._service = service
        self._entry = entry

    def __enter__(self) -> _Session:
        return self._entry

    def __exit__(self, *exc: object) -> None:
        self._service._done(self._entry)


@dataclass(frozen=True)
class _Tactic:
    """A tactic as the checker's candidate (sessions have no scores)."""

    text: str
    score: float = 0.0
