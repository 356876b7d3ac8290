"""The prover: one request, one target, the strategies in turn, one answer that says what it cost.

``leanstep prove``, ``POST /prove``, the MCP ``prove`` tool and ``leanstep
eval`` all call :meth:`Prover.prove`. A request names its target (a statement
under a header, or a goal at a position) and its budget: expansions for
search, samples and repair rounds for whole proofs, and a wall-clock timeout
that the server caps at ``--prove-timeout`` (the answer's ``budget`` says which
limit applied). ``auto`` runs best-first search first, with at most half the
time (short proofs are found in a few expansions on a warm pool, and a model's
next-tactic candidates run dry fast when they lead nowhere), then whole proofs
with what is left.

The answer says whether the target is proved, the proof (the script to put at
the call, or the full theorem), which strategy found it, the expansions and
samples it took, and where the time went: generating (the model) and checking
(Lean), next to the total.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from leanstep.check.source import ContextError, build_goal_context
from leanstep.config import Config
from leanstep.generate.base import Generator
from leanstep.limits import AppliedTimeout, bounded_timeout
from leanstep.prove.checking import Checked, CheckTime, ProofChecker
from leanstep.prove.strategy import STRATEGIES, Strategy
from leanstep.prove.target import Target, TargetError
from leanstep.prove.whole import Attempt, Sampling, WholeProver, WholeRun

TIMEOUT_FLAG = "--prove-timeout"
SEARCH_SHARE = 0.5  # of the time, for search when ``auto`` runs both


@dataclass(frozen=True)
class ProveRequest:
    """What to prove and with what budget; None: the server's default (``--prove-*``, ``--strategy``).

    The target is ``statement`` (under ``header``), or the goal at ``position`` in
    ``source`` (1-based line, 0-based code-point column), or at the end of
    ``context`` (the file text up to the call). ``tactic_state``: the goal, when
    the caller has it (the editor does); shown to whole-proof models.
    ``first_valid=False`` checks every sample (evaluation with every reward);
    ``random_order`` checks whole-proof samples as drawn, in an order fixed by
    ``seed``, instead of best score first (an unbiased pass@k needs it).
    """

    strategy: Strategy | None = None
    statement: str | None = None
    header: str = ""
    source: str | None = None
    position: tuple[int, int] | None = None
    context: str | None = None
    tactic_state: str | None = None
    expansions: int | None = None
    samples: int | None = None
    rounds: int | None = None
    timeout: float | None = None
    seed: int = 0
    first_valid: bool = True
    random_order: bool = False


@dataclass(frozen=True)
class ProveTimings:
    generation_ms: float
    checking_ms: float
    total_ms: float


@dataclass(frozen=True)
class ProveResult:
    """The answer (see the module docstring). ``check`` is the final check: the proof's, else the best
    failed one; ``stopped`` says why no proof was found (``timeout``, ``budget``, ``exhausted``)."""

    proved: bool
    proof: str | None
    strategy: Strategy | None
    tried: tuple[Strategy, ...]
    expansions: int
    samples: int
    rounds: int
    timings: ProveTimings
    budget: AppliedTimeout
    check: Checked | None = None
    stopped: str | None = None
    attempts: tuple[Attempt, ...] = ()
    checking: CheckTime | None = None


class Prover:
    """Proves targets with one generator and one checker; thread-safe when they are."""

    def __init__(self, generator: Generator, checker: ProofChecker, config: Config) -> None:
        self.generator = generator
        self.checker = checker
        self.config = config
        self.whole = WholeProver(generator, checker, Sampling(config.temperatures, config.proof_max_new_tokens))

    def budget(self, timeout: float | None) -> AppliedTimeout:
        """The wall-clock budget of one request (raises ``LimitError`` below ``--min-timeout``)."""
        return bounded_timeout(timeout, ceiling=self.config.prove_timeout, ceiling_flag=TIMEOUT_FLAG,
                               floor=self.config.min_timeout)

    def target(self, request: ProveRequest) -> Target:
        """The request's target; :class:`TargetError` says what is wrong with it."""
        if request.statement is not None:
            return Target.for_statement(request.header, request.statement)
        try:
            context = build_goal_context(request.context, request.source, request.position)
        except ContextError as exc:
            raise TargetError(f"no goal at the position: {exc}") from None
        return Target.at(context, goal=request.tactic_state)

    def strategies(self, request: ProveRequest) -> tuple[Strategy, ...]:
        strategy = request.strategy or self.config.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        return ("search", "whole") if strategy == "auto" else (strategy,)

    def prove(self, request: ProveRequest, target: Target | None = None) -> ProveResult:
        """Look for a proof of the request's target within its budget."""
        started = time.monotonic()
        budget = self.budget(request.timeout)
        target = target or self.target(request)
        deadline = started + budget.seconds
        plan = self.strategies(request)
        whole: WholeRun | None = None
        tried: list[Strategy] = []
        for strategy in plan:
            if time.monotonic() >= deadline:
                break
            tried.append(strategy)
            if strategy == "whole":
                whole = self.whole.run(
                    target, samples=request.samples or self.config.prove_samples,
                    rounds=self.config.prove_rounds if request.rounds is None else request.rounds,
                    deadline=deadline, check_timeout=self.config.timeout, first_valid=request.first_valid,
                    order_seed=request.seed if request.random_order else None)
                if whole.proof is not None:
                    break
            else:
                raise ValueError("best-first search needs proof sessions, which this server does not have")
        return self._answer(target, budget, started, tuple(tried), whole)

    @staticmethod
    def _answer(target: Target, budget: AppliedTimeout, started: float, tried: tuple[Strategy, ...],
                whole: WholeRun | None) -> ProveResult:
        checking = whole.checking if whole is not None else CheckTime()
        generation = whole.generation_seconds if whole is not None else 0.0
        timings = ProveTimings(generation * 1000, checking.wall * 1000, (time.monotonic() - started) * 1000)
        attempts = tuple(whole.attempts) if whole is not None else ()
        winner = whole.proof if whole is not None else None
        checked = [a.checked for a in attempts if a.checked is not None and a.checked.result is not None]
        final = winner.checked if winner is not None else (checked[-1] if checked else None)
        stopped = None if winner is not None else (whole.stopped if whole is not None and whole.stopped
                                                   else "exhausted")
        return ProveResult(
            proved=winner is not None, proof=final.placed.proof if winner is not None and final else None,
            strategy="whole" if winner is not None else None, tried=tried, expansions=0,
            samples=whole.samples if whole is not None else 0, rounds=whole.rounds if whole is not None else 0,
            timings=timings, budget=budget, check=final, stopped=stopped, attempts=attempts, checking=checking)


__all__ = ["ProveRequest", "ProveResult", "ProveTimings", "Prover"]
