"""Best-first tactic search on a proof session.

The open state with the highest priority is expanded next: the generator
proposes next tactics for its goals, the session runs them all at once over
the pool's REPLs (``SessionService.attempt``), and every state Lean accepts
whose goals were not seen before joins the frontier. A state's priority is
the sum of the scores (mean log-probabilities) of the tactics on its path, as
ReProver and LeanCopilot rank states, so a path of confident steps comes
first; ties go to the state found first. The search stops at the first
tactic that leaves no goal, when the budget ends: ``expansions`` states
expanded, or the wall clock, or when its caller left (``abandoned``, asked
before each expansion and before its candidates are checked; the generation
is told too, and a batched one drops it).

``width`` states are expanded at once (generation and checking of each on its
own thread, results taken in frontier order), which keeps more REPLs busy when
a state has few candidates. Given a seed and a deterministic generator the
search is deterministic: the same states are expanded in the same order, the
same proof is found.

A REPL that crashes or hangs on a candidate costs that candidate (``invalid``:
crashed, or timed out at the step's budget); the session replays its states on
another REPL, and the search goes on.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from leanstep.check.sessions import FromPosition, SessionError, SessionService, StateUnreachable, StepResult
from leanstep.check.tactics import CandidateStatus
from leanstep.generate.base import Candidate, GenerationRequest, Generator
from leanstep.generate.batching import RequestAbandoned, caller_left
from leanstep.prove.strategy import CALLER_LEFT
from leanstep.suggest import distinct_candidates

OWNER = "leanstep.prove"  # the sessions a search opens are its own, closed when it ends
SEED_STRIDE = 1_000_003  # seeds of one search's expansions: seed * stride + expansion number


@dataclass(frozen=True)
class Sampling:
    """What each expansion asks the generator for."""

    num_samples: int = 8
    temperatures: tuple[float, ...] = (0.5,)
    max_new_tokens: int = 64


@dataclass(frozen=True)
class SearchRun:
    """What a search did: the proof's tactics (None: none found), the budget it used, where the time went,
    and why it stopped without a proof (``timeout``, ``budget``, ``exhausted``, ``client_left``, or a session's
    refusal)."""

    tactics: tuple[str, ...] | None
    expansions: int
    states: int  # distinct states reached (the root included)
    generation_seconds: float
    checking_seconds: float
    stopped: str | None = None


@dataclass(order=True, frozen=True)
class _Open:
    rank: float  # minus the priority: heapq pops the smallest
    order: int  # ties: the state found first
    state: int
    goals: tuple[str, ...]
    priority: float


@dataclass(frozen=True)
class _Expansion:
    node: _Open
    candidates: tuple[Candidate, ...]
    results: tuple[StepResult, ...]
    generation: float
    checking: float


def goals_key(goals: Sequence[str]) -> tuple[str, ...]:
    """States with these goals are the same state for the search (whitespace aside)."""
    return tuple(" ".join(g.split()) for g in goals)


class BestFirstSearch:
    """Best-first search over ``sessions`` with ``generator`` (see the module docstring); thread-safe."""

    def __init__(self, generator: Generator, sessions: SessionService, sampling: Sampling, *,
                 step_timeout: float, width: int = 1) -> None:
        self.generator = generator
        self.sessions = sessions
        self.sampling = sampling
        self.step_timeout = step_timeout
        self.width = max(1, width)

    def run(self, origin: FromPosition, *, expansions: int, deadline: float, seed: int = 0,
            abandoned: Callable[[], bool] | None = None) -> SearchRun:
        """Search for a proof of ``origin``'s goal within ``expansions`` and ``deadline`` (``time.monotonic()``),
        until ``abandoned`` says the caller left."""
        budget = self._budget(deadline)
        if budget is None:
            return SearchRun(None, 0, 0, 0.0, 0.0, "timeout")
        try:
            view = self.sessions.start(origin, OWNER, budget)
        except SessionError as exc:
            return SearchRun(None, 0, 0, 0.0, 0.0, f"{exc.reason}: {exc}")
        try:
            return self._search(view.id, view.roots[0], view.states[view.roots[0]].goals, expansions, deadline, seed,
                                abandoned)
        finally:
            self.sessions.close(view.id, OWNER)

    def _budget(self, deadline: float) -> float | None:
        """The time one session call may take now; None when less than the sessions' floor is left."""
        remaining = min(self.step_timeout, deadline - time.monotonic())
        return remaining if remaining >= self.sessions.limits.min_timeout else None

    def _search(self, session: str, root: int, goals: tuple[str, ...], budget: int, deadline: float,
                seed: int, abandoned: Callable[[], bool] | None) -> SearchRun:
        order = itertools.count()
        frontier = [_Open(-0.0, next(order), root, goals, 0.0)]
        seen = {goals_key(goals)}
        expanded = 0
        generation = checking = 0.0
        stopped = "exhausted"
        with ThreadPoolExecutor(self.width, thread_name_prefix="prove-search") as executor:
            while frontier:
                if expanded >= budget:
                    stopped = "budget"
                    break
                if time.monotonic() >= deadline:
                    stopped = "timeout"
                    break
                if caller_left(abandoned):
                    stopped = CALLER_LEFT
                    break
                batch = [heapq.heappop(frontier) for _ in range(min(self.width, len(frontier), budget - expanded))]
                seeds = [seed * SEED_STRIDE + expanded + k for k in range(len(batch))]
                try:
                    done = list(executor.map(lambda job: self._expand(session, job[0], job[1], deadline, abandoned),
                                             zip(batch, seeds, strict=True)))
                except SessionError as exc:  # no REPL within the budget, or the session is full
                    stopped = f"{exc.reason}: {exc}"
                    break
                except RequestAbandoned:  # the caller left while an expansion generated
                    stopped = CALLER_LEFT
                    break
                expanded += len(batch)
                if any(e is None for e in done):
                    stopped = "timeout"
                for expansion in done:
                    if expansion is None:
                        continue
                    generation += expansion.generation
                    checking += expansion.checking
                    for candidate, result in zip(expansion.candidates, expansion.results, strict=True):
                        if result.status is CandidateStatus.CLOSES_GOAL and result.state is not None:
                            script = self.sessions.proof(session, result.state, OWNER)
                            return SearchRun(script.tactics, expanded, len(seen), generation, checking)
                        if result.status is not CandidateStatus.VALID or result.state is None:
                            continue
                        key = goals_key(result.goals)
                        if key in seen:
                            continue
                        seen.add(key)
                        priority = expansion.node.priority + candidate.score
                        heapq.heappush(frontier, _Open(-priority, next(order), result.state, result.goals, priority))
                if stopped == "timeout":
                    break
        return SearchRun(None, expanded, len(seen), generation, checking, stopped)

    def _expand(self, session: str, node: _Open, seed: int, deadline: float,
                abandoned: Callable[[], bool] | None) -> _Expansion | None:
        """Generate candidates for ``node`` and run them on its state; None when the time is up.
        ``RequestAbandoned`` when the caller left before the candidates were checked."""
        started = time.monotonic()
        request = GenerationRequest(tactic_state="\n\n".join(node.goals), num_samples=self.sampling.num_samples,
                                    temperatures=self.sampling.temperatures,
                                    max_new_tokens=self.sampling.max_new_tokens, seed=seed, abandoned=abandoned)
        candidates = list(distinct_candidates(self.generator.generate(request)))[:self.sessions.limits.max_tactics]
        generated = time.monotonic()
        if not candidates:
            return _Expansion(node, (), (), generated - started, 0.0)
        budget = self._budget(deadline)
        if budget is None:
            return None
        if caller_left(abandoned):
            raise RequestAbandoned("the client left before the expansion's candidates were checked")
        try:
            results = self.sessions.attempt(session, node.state, [c.text for c in candidates], OWNER, budget)
        except StateUnreachable:  # its path no longer replays: a dead end, not the end of the search
            return _Expansion(node, (), (), generated - started, time.monotonic() - generated)
        return _Expansion(node, tuple(candidates), results, generated - started, time.monotonic() - generated)


__all__ = ["OWNER", "BestFirstSearch", "Sampling", "SearchRun", "goals_key"]
