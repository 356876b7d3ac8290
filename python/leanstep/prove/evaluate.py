"""Evaluation: pass@k of a strategy over a set of problems.

Each problem gets ``n`` attempts: ``n`` whole-proof samples (each with its
repairs, when ``rounds`` > 0), or ``n`` searches with seeds ``0 .. n-1``. Two
ways to estimate pass@k, both unbiased:

* ``check_all``: every attempt is checked; with ``c`` of ``n`` proved, pass@k is
  ``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021), computed as a product so that
  no factorial is formed. RL pipelines need this mode anyway: every reward.
* first valid wins (the default): a problem's attempts are one group of a
  verifier batch with ``first_valid`` (``check.verify``): they start in order,
  and once one is proved the later ones that have not started are skipped,
  while every one before it is checked whatever order the checks end in. So
  the first proof's index is exact, and pass@k is ``1`` when it is among the
  first ``k`` attempts (one draw of ``k`` attempts rather than all of them:
  higher variance, much less checking). The checking that was saved is
  reported (attempts skipped, and REPL seconds spent).

Whole-proof samples are checked in a random order fixed by the problem's id
(``seed_of``), the same every run, so that the first ``k`` of them are a fair
draw. Problems run ``parallel`` at once; the verifier takes their batches in
turn, so with as many problems as checking threads (``default_parallel``) each
problem's samples are checked one after another while the other problems fill
the REPLs, and first valid wins skips the most.

With repair rounds an attempt is a sample and its repairs; rounds stop at the
first proof, so with first valid wins a sample before the proved one may not
have had all its repairs: the figure is then what the run found, at most the
``check_all`` one.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from leanstep.prove.checking import CheckTime
from leanstep.prove.prover import Prover, ProveRequest, ProveResult
from leanstep.prove.strategy import Strategy


def default_parallel(strategy: Strategy, max_repls: int) -> int:
    """Problems at once: for whole proofs, one per checking thread of the verifier (two per REPL), so that the
    verifier's turns check each problem's samples one after another; for search, one per REPL (a search holds
    its REPL)."""
    return 2 * max_repls if strategy == "whole" else max_repls


@dataclass(frozen=True)
class Problem:
    """A theorem to prove: its id, the header it lives under, its statement."""

    id: str
    header: str
    statement: str


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from ``c`` proved of ``n`` attempts: 1 - C(n-c, k)/C(n, k), stably."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


@dataclass(frozen=True)
class ProblemOutcome:
    """What the attempts at one problem found: ``proved[i]`` is attempt i's outcome (None: not checked)."""

    problem: Problem
    proved: tuple[bool | None, ...]
    results: tuple[ProveResult, ...]  # one per whole-proof run or per search

    @property
    def first_proof(self) -> int | None:
        return next((i for i, p in enumerate(self.proved) if p), None)

    def pass_at(self, k: int, check_all: bool) -> float:
        if check_all:
            return pass_at_k(len(self.proved), sum(1 for p in self.proved if p), k)
        first = self.first_proof
        return 1.0 if first is not None and first < k else 0.0


@dataclass
class Summary:
    """pass@k for every k up to the run's, the problems solved, and what the run cost."""

    problems: int = 0
    solved: int = 0
    pass_at: dict[int, float] = field(default_factory=dict)
    attempts_checked: int = 0
    attempts_skipped: int = 0
    checking: CheckTime = field(default_factory=CheckTime)
    generation_seconds: float = 0.0
    wall_seconds: float = 0.0


class Evaluation:
    """Runs a strategy on problems (``parallel`` at once) and estimates pass@k (see the module docstring)."""

    def __init__(self, prover: Prover, strategy: Strategy, *, k: int, attempts: int | None = None,
                 rounds: int = 0, expansions: int | None = None, check_all: bool = False,
                 parallel: int = 1) -> None:
        self.attempts = attempts if attempts is not None else k
        if not 1 <= k <= self.attempts:
            raise ValueError(f"pass@{k} needs at least {k} attempts per problem, got {self.attempts}")
        if strategy == "auto":
            raise ValueError("evaluate one strategy at a time: search or whole")
        self.prover = prover
        self.strategy = strategy
        self.k = k
        self.rounds = rounds
        self.expansions = expansions
        self.check_all = check_all
        self.parallel = max(1, parallel)

    def problem(self, problem: Problem) -> ProblemOutcome:
        """Every attempt at one problem (until its first proof, unless ``check_all``)."""
        request = ProveRequest(strategy=self.strategy, statement=problem.statement, header=problem.header,
                               rounds=self.rounds, expansions=self.expansions, first_valid=not self.check_all)
        if self.strategy == "whole":
            result = self.prover.prove(replace(request, samples=self.attempts, random_order=True,
                                               seed=self.seed_of(problem)))
            proved: list[bool | None] = [None] * self.attempts
            for attempt in result.attempts:
                if attempt.checked is not None and attempt.checked.result is not None and attempt.line < self.attempts:
                    proved[attempt.line] = bool(proved[attempt.line]) or attempt.proved
            return ProblemOutcome(problem, tuple(proved), (result,))
        results: list[ProveResult] = []
        for seed in range(self.attempts):
            if results and results[-1].proved and not self.check_all:
                break
            results.append(self.prover.prove(replace(request, seed=seed)))
        searched = [r.proved for r in results]
        return ProblemOutcome(problem, tuple(searched + [None] * (self.attempts - len(searched))), tuple(results))

    @staticmethod
    def seed_of(problem: Problem) -> int:
        """A seed fixed by the problem's id: the order its samples are checked in is the same every run."""
        return zlib.crc32(problem.id.encode("utf-8"))

    def run(self, problems: Sequence[Problem],
            on_outcome: Callable[[ProblemOutcome], None] | None = None) -> tuple[list[ProblemOutcome], Summary]:
        """Every problem, ``parallel`` at a time; ``on_outcome`` gets each outcome as it ends, one call at a time."""
        started = time.monotonic()
        outcomes: list[ProblemOutcome | None] = [None] * len(problems)
        lock = threading.Lock()

        def one(index: int) -> None:
            outcome = self.problem(problems[index])
            with lock:
                outcomes[index] = outcome
                if on_outcome is not None:
                    on_outcome(outcome)

        with ThreadPoolExecutor(self.parallel, thread_name_prefix="eval") as executor:
            for future in [executor.submit(one, i) for i in range(len(problems))]:
                future.result()
        done = [o for o in outcomes if o is not None]
        return done, self.summary(done, time.monotonic() - started)

    def summary(self, outcomes: Sequence[ProblemOutcome], wall: float) -> Summary:
        summary = Summary(problems=len(outcomes), wall_seconds=wall)
        for outcome in outcomes:
            summary.solved += outcome.first_proof is not None
            summary.attempts_checked += sum(1 for p in outcome.proved if p is not None)
            summary.attempts_skipped += sum(1 for p in outcome.proved if p is None)
            for result in outcome.results:
                if result.checking is not None:
                    summary.checking.add(result.checking)
                summary.generation_seconds += result.timings.generation_ms / 1000
        for k in range(1, self.k + 1):
            summary.pass_at[k] = (sum(o.pass_at(k, self.check_all) for o in outcomes) / len(outcomes)
                                  if outcomes else 0.0)
        return summary


__all__ = ["Evaluation", "Problem", "ProblemOutcome", "Summary", "default_parallel", "pass_at_k"]
