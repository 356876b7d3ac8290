"""Generate candidate tactics, check them against the goal, rank them: the ``/suggest`` pipeline.

The editor wants, in order: tactics that close the goal, then tactics that
make progress, then unchecked ones (which the Lean tactic re-checks locally),
and never a broken answer. So generation is one batched model call, checking
is bounded by a wall-clock budget (see :mod:`leanstep.check.tactics`) that
the client may shorten but never lengthen past ``--check-timeout`` (the
answer's ``limits`` says which applied), and any problem locating the goal
turns into ``unchecked`` suggestions rather than an error. Invalid candidates
are dropped by default (the editor cannot use them); ``include_invalid`` keeps
them, last, with Lean's message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from leanstep.check.sessions import check_attempt
from leanstep.check.source import ContextError, GoalContext, build_goal_context
from leanstep.check.tactics import CandidateStatus, CheckedCandidate, CheckReport, GoalReading, TacticChecker
from leanstep.config import Config
from leanstep.generate.base import Candidate, GenerationRequest, Generator
from leanstep.generate.batching import RequestAbandoned
from leanstep.limits import AppliedTimeout, bounded_timeout
from leanstep.repl.pool import ReplPool

RANK = {status: rank for rank, status in enumerate(CandidateStatus)}
# Never suggested: they "close" any goal without proving it.
DROPPED_TEXTS = frozenset({"sorry", "admit", "exact sorry"})
MIN_SCORE = -1e9  # JSON has no -Infinity; scores below this are clamped
MIN_CHECK_SECONDS = 0.001  # what checking gets when reading the goal used up the budget


@dataclass(frozen=True)
class SuggestRequest:
    """One ``llmstep`` call. ``position`` is (1-based line, 0-based code-point column) in ``source``.

    ``tactic_state``: the goal; None to have it read from Lean at the call
    (``context``, or ``source`` + ``position``), within the checking budget.
    ``n``: candidates to sample (default: the config's ``num_samples``);
    ``timeout``: checking budget in seconds (default and most: ``check_timeout``).
    ``abandoned``: turns true once the caller no longer waits (its HTTP client left);
    generation then drops the request if it has not started.
    """

    tactic_state: str | None = None
    prefix: str = ""
    context: str | None = None
    source: str | None = None
    position: tuple[int, int] | None = None
    file_name: str | None = None
    n: int | None = None
    check: bool = True
    timeout: float | None = None
    include_invalid: bool = False
    abandoned: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Suggestion:
    text: str
    status: CandidateStatus
    goals: tuple[str, ...] = ()
    score: float = 0.0
    message: str | None = None
    time_ms: float = 0.0


@dataclass(frozen=True)
class Timings:
    generation_ms: float = 0.0
    checking_ms: float = 0.0  # reading the goal (when the request had none) and checking the candidates
    total_ms: float = 0.0
    setup_ms: float = 0.0  # until the first REPL had the goal's proof state


@dataclass(frozen=True)
class SuggestResult:
    """Ranked suggestions plus what happened: counts per status (before dropping), the goal, timings."""

    suggestions: tuple[Suggestion, ...]
    timings: Timings
    counts: dict[CandidateStatus, int] = field(default_factory=dict)
    goal: str | None = None
    checked: bool = False
    context_error: str | None = None
    report: CheckReport | None = field(default=None, compare=False, repr=False)
    budget: AppliedTimeout | None = None  # the checking budget that applied, when candidates were checked


class SuggestionFailed(RuntimeError):
    """The model (or its server) failed to generate; the message names the error. Not a client's fault: the
    server answers it as unavailable (HTTP 503, or the same words as an MCP tool error)."""


def distinct_candidates(candidates: Iterable[Candidate]) -> Iterator[Candidate]:
    """Each candidate's stripped text once, in the given order, without empty texts and ``DROPPED_TEXTS``
    (a tactic that only cheats is never worth checking); scores and counts as given."""
    seen: set[str] = set()
    for candidate in candidates:
        text = candidate.text.strip()
        if text and text not in seen and text not in DROPPED_TEXTS:
            seen.add(text)
            yield Candidate(text, candidate.score, candidate.count)


def rank(checked: Sequence[CheckedCandidate]) -> list[CheckedCandidate]:
    """closes_goal, valid (progress before no-op), unchecked, invalid; by score within a group (stable)."""
    return sorted(checked, key=lambda c: (RANK[c.status], not c.progress, -_finite(c.score)))


def _finite(score: float) -> float:
    return score if math.isfinite(score) and score > MIN_SCORE else MIN_SCORE


def _unchecked(candidates: Sequence[Candidate], message: str | None) -> list[CheckedCandidate]:
    return [CheckedCandidate(c.text, CandidateStatus.UNCHECKED, (), message, c.score) for c in candidates]


class Suggester:
    """``suggest(request)``: generate -> check -> rank. Thread-safe if the generator is."""

    def __init__(self, generator: Generator, pool: ReplPool | None, config: Config,
                 checker: TacticChecker | None = None) -> None:
        self.generator = generator
        self.pool = pool
        self.config = config
        if checker is None and pool is not None:
            checker = TacticChecker(pool, budget=config.check_timeout, prepare_timeout=config.timeout)
        self.checker = checker

    def generate(self, request: SuggestRequest, tactic_state: str) -> list[Candidate]:
        """The model's distinct candidates for ``tactic_state``, best first, without the ones never suggested.

        Raises :class:`SuggestionFailed` when the model fails, and ``RequestAbandoned`` when the caller left
        (``request.abandoned``) before its generation ran.
        """
        generation = GenerationRequest(
            tactic_state=tactic_state,
            prefix=request.prefix,
            num_samples=request.n or self.config.num_samples,
            temperatures=self.config.temperatures,
            max_new_tokens=self.config.max_new_tokens,
            abandoned=request.abandoned,
        )
        try:
            generated = self.generator.generate(generation)
        except RequestAbandoned:  # the caller left: not a failure of the model
            raise
        except Exception as exc:
            raise SuggestionFailed(f"{type(exc).__name__}: {exc}") from exc
        return [Candidate(c.text, _finite(c.score)) for c in distinct_candidates(generated)]

    def suggest(self, request: SuggestRequest) -> SuggestResult:
        """Generate, check, rank; raises :class:`SuggestionFailed` when the model fails."""
        started = time.monotonic()
        goal_context, budget, context_error = (self._locate(request) if request.check or request.tactic_state is None
                                               else (None, None, None))
        tactic_state = request.tactic_state
        reading: GoalReading | None = None
        if tactic_state is None:
            reading = self._read_goal(goal_context, budget, context_error)
            if reading.goal is None:
                return self._no_goal(reading, budget, started)
            tactic_state = reading.goal
        generation_started = time.monotonic()
        candidates = self.generate(request, tactic_state)
        generated = time.monotonic()
        if request.check:  # reading the goal, when the request had none, spent part of the one checking budget
            spent = reading.seconds if reading is not None else 0.0
            checked, report, context_error = self._check(goal_context, budget, context_error, candidates, spent)
        else:
            checked, report, context_error = _unchecked(candidates, None), None, "checking was not requested"
        shown = [c for c in rank(checked) if request.include_invalid or c.status != CandidateStatus.INVALID]
        return self._result(shown, checked, report, reading, context_error, budget,
                            started, generation_started, generated)

    def attempt(self, request: SuggestRequest, tactics: Sequence[str]) -> SuggestResult:
        """Check ``tactics`` at the request's goal as :meth:`suggest` checks a model's candidates (no model),
        answered in the given order, every one with its verdict (an agent's "multi-attempt").

        Nothing is dropped: a ``sorry`` is checked and answered ``invalid`` like any tactic that leaves one.
        Raises :class:`~leanstep.check.sessions.BadRequest` for tactics a session's attempt refuses too.
        """
        check_attempt(tactics, self.config.max_attempt_tactics)
        started = time.monotonic()
        goal_context, budget, context_error = self._locate(request)
        candidates = [Candidate(text, 0.0) for text in tactics]
        checked, report, context_error = self._check(goal_context, budget, context_error, candidates, 0.0)
        return self._result(checked, checked, report, None, context_error, budget, started, started, started)

    def _locate(self, request: SuggestRequest) -> tuple[GoalContext | None, AppliedTimeout | None, str | None]:
        """The goal context at the request's call, the checking budget that applies to it, or why there is none."""
        if self.checker is None:
            return None, None, None
        try:
            goal_context = build_goal_context(request.context, request.source, request.position,
                                              self.config.heartbeats)
        except ContextError as exc:
            return None, None, str(exc)
        budget = bounded_timeout(request.timeout, ceiling=self.checker.budget, ceiling_flag="--check-timeout")
        return goal_context, budget, None

    def _check(self, goal_context: GoalContext | None, budget: AppliedTimeout | None, context_error: str | None,
               candidates: Sequence[Candidate], spent: float,
               ) -> tuple[list[CheckedCandidate], CheckReport | None, str | None]:
        """Every candidate's verdict on the goal (``spent`` seconds of the budget are gone), the checker's
        report, and why nothing could be checked (None when the goal was reached)."""
        if self.checker is None:
            return _unchecked(candidates, "not checked: no REPL pool"), None, "no REPL pool"
        if goal_context is None or budget is None:
            return _unchecked(candidates, f"not checked: {context_error}"), None, context_error
        report = self.checker.check(goal_context, candidates, budget=max(budget.seconds - spent, MIN_CHECK_SECONDS))
        return list(report.candidates), report, report.context_error

    @staticmethod
    def _result(shown: Sequence[CheckedCandidate], checked: Sequence[CheckedCandidate], report: CheckReport | None,
                reading: GoalReading | None, context_error: str | None, budget: AppliedTimeout | None,
                started: float, generation_started: float, generated: float) -> SuggestResult:
        """The answer: ``shown`` as suggestions, counts over all of ``checked``, and where the time went."""
        finished = time.monotonic()
        counts = dict.fromkeys(CandidateStatus, 0)
        for c in checked:
            counts[c.status] += 1
        suggestions = tuple(Suggestion(c.text, c.status, c.goals, _finite(c.score), c.message, c.time * 1000)
                            for c in shown)
        goal_read_ms = reading.seconds * 1000 if reading is not None else 0.0
        timings = Timings(
            generation_ms=(generated - generation_started) * 1000,
            checking_ms=goal_read_ms + (finished - generated) * 1000,
            total_ms=(finished - started) * 1000,
            setup_ms=goal_read_ms or ((report.setup_time * 1000) if report is not None else 0.0),
        )
        goal = reading.goal if reading is not None else report.goal if report is not None else None
        return SuggestResult(suggestions, timings, counts, goal,
                             checked=report is not None and report.context_error is None, context_error=context_error,
                             report=report, budget=budget if report is not None else None)

    def _read_goal(self, context: GoalContext | None, budget: AppliedTimeout | None,
                   context_error: str | None) -> GoalReading:
        """The goal at the call, from Lean, for a request that did not send it."""
        if self.checker is None:
            return GoalReading(None, "no REPL pool to read the goal from", 0.0)
        if context is None or budget is None:
            return GoalReading(None, context_error or "no context", 0.0)
        return self.checker.read_goal(context, budget.seconds)

    @staticmethod
    def _no_goal(reading: GoalReading, budget: AppliedTimeout | None, started: float) -> SuggestResult:
        """Nothing to suggest for: the request sent no goal and Lean's could not be read."""
        timings = Timings(checking_ms=reading.seconds * 1000, total_ms=(time.monotonic() - started) * 1000)
        return SuggestResult((), timings, dict.fromkeys(CandidateStatus, 0),
                             context_error=f"no goal to suggest for: {reading.error}", budget=budget)
