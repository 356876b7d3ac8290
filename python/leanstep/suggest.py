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
from collections.abc import Sequence
from dataclasses import dataclass, field

from leanstep.check.tactics import (
    CLOSES_GOAL,
    INVALID,
    UNCHECKED,
    VALID,
    CheckedCandidate,
    CheckReport,
    TacticChecker,
)
from leanstep.check.source import ContextError, build_goal_context
from leanstep.config import Config
from leanstep.generate.base import Candidate, GenerationRequest, Generator
from leanstep.limits import AppliedTimeout, bounded_timeout
from leanstep.repl.pool import ReplPool

RANK = {CLOSES_GOAL: 0, VALID: 1, UNCHECKED: 2, INVALID: 3}
# Never suggested: they "close" any goal without proving it.
DROPPED_TEXTS = frozenset({"sorry", "admit", "exact sorry"})
MIN_SCORE = -1e9  # JSON has no -Infinity; scores below this are clamped


@dataclass(frozen=True)
class SuggestRequest:
    """One ``llmstep`` call. ``position`` is (1-based line, 0-based code-point column) in ``source``.

    ``n``: candidates to sample (default: the config's ``num_samples``);
    ``timeout``: checking budget in seconds (default and most: ``check_timeout``).
    """

    tactic_state: str
    prefix: str = ""
    context: str | None = None
    source: str | None = None
    position: tuple[int, int] | None = None
    file_name: str | None = None
    n: int | None = None
    check: bool = True
    timeout: float | None = None
    include_invalid: bool = False


@dataclass(frozen=True)
class Suggestion:
    text: str
    status: str
    goals: tuple[str, ...] = ()
    score: float = 0.0
    message: str | None = None
    time_ms: float = 0.0


@dataclass(frozen=True)
class Timings:
    generation_ms: float = 0.0
    checking_ms: float = 0.0
    total_ms: float = 0.0
    setup_ms: float = 0.0  # until the first REPL had the goal's proof state


@dataclass(frozen=True)
class SuggestResult:
    """Ranked suggestions plus what happened: counts per status (before dropping), the goal, timings."""

    suggestions: tuple[Suggestion, ...]
    timings: Timings
    counts: dict[str, int] = field(default_factory=dict)
    goal: str | None = None
    checked: bool = False
    context_error: str | None = None
    report: CheckReport | None = field(default=None, compare=False, repr=False)
    budget: AppliedTimeout | None = None  # the checking budget that applied, when candidates were checked

    def texts(self) -> list[str]:
        return [s.text for s in self.suggestions]


def rank(checked: Sequence[CheckedCandidate]) -> list[CheckedCandidate]:
    """closes_goal, valid (progress before no-op), unchecked, invalid; by score within a group (stable)."""
    return sorted(checked, key=lambda c: (RANK.get(c.status, 9), not c.progress, -_finite(c.score)))


def _finite(score: float) -> float:
    return score if math.isfinite(score) and score > MIN_SCORE else MIN_SCORE


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

    def generate(self, request: SuggestRequest) -> list[Candidate]:
        generation = GenerationRequest(
            tactic_state=request.tactic_state,
            prefix=request.prefix,
            num_samples=request.n or self.config.num_samples,
            temperatures=self.config.temperatures,
            max_new_tokens=self.config.max_new_tokens,
        )
        seen: set[str] = set()
        out: list[Candidate] = []
        for candidate in self.generator.generate(generation):
            text = candidate.text.strip()
            if not text or text in seen or text in DROPPED_TEXTS:
                continue
            seen.add(text)
            out.append(Candidate(text, _finite(candidate.score)))
        return out

    def suggest(self, request: SuggestRequest) -> SuggestResult:
        started = time.monotonic()
        candidates = self.generate(request)
        generated = time.monotonic()
        report: CheckReport | None = None
        budget: AppliedTimeout | None = None
        context_error: str | None = None
        if not request.check:
            checked = [CheckedCandidate(c.text, UNCHECKED, (), None, c.score) for c in candidates]
            context_error = "checking was not requested"
        elif self.checker is None:
            checked = [CheckedCandidate(c.text, UNCHECKED, (), "not checked: no REPL pool", c.score)
                       for c in candidates]
            context_error = "no REPL pool"
        else:
            try:
                goal_context = build_goal_context(request.context, request.source, request.position,
                                                  self.config.heartbeats)
            except ContextError as exc:
                goal_context = None
                context_error = str(exc)
            if goal_context is None:
                checked = [CheckedCandidate(c.text, UNCHECKED, (), f"not checked: {context_error}", c.score)
                           for c in candidates]
            else:
                budget = bounded_timeout(request.timeout, ceiling=self.checker.budget, ceiling_flag="--check-timeout")
                report = self.checker.check(goal_context, candidates, budget=budget.seconds)
                checked = list(report.candidates)
                context_error = report.context_error
        finished = time.monotonic()
        counts = {status: 0 for status in RANK}
        for c in checked:
            counts[c.status] = counts.get(c.status, 0) + 1
        ranked = [c for c in rank(checked) if request.include_invalid or c.status != INVALID]
        suggestions = tuple(Suggestion(c.text, c.status, c.goals, _finite(c.score), c.message, c.time * 1000)
                            for c in ranked)
        timings = Timings(
            generation_ms=(generated - started) * 1000,
            checking_ms=(finished - generated) * 1000,
            total_ms=(finished - started) * 1000,
            setup_ms=(report.setup_time * 1000) if report is not None else 0.0,
        )
        return SuggestResult(suggestions, timings, counts, report.goal if report else None,
                             checked=report is not None and report.context_error is None, context_error=context_error,
                             report=report, budget=budget)
