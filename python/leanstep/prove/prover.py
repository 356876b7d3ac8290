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

A request may carry ``abandoned``, which turns true once its caller no longer
waits (``POST /prove``'s client hung up, an MCP call was cancelled): the
proving then stops at once, ``stopped`` is ``client_left``, and no generation
or check starts after it, so a client that sends requests and hangs up costs
the server no more than the step each was in.

The answer says whether the target is proved, the proof (the script to put at
the call, or the full theorem), which strategy found it, the expansions and
samples it took, and where the time went: generating (the model) and checking
(Lean), next to the total.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from leanstep.check.sessions import SessionService
from leanstep.check.source import ContextError, build_goal_context
from leanstep.check.verify import MIN_CHECK_SECONDS
from leanstep.config import Config
from leanstep.generate.base import Generator
from leanstep.generate.batching import RequestAbandoned, caller_left
from leanstep.limits import AppliedTimeout, bounded_timeout
from leanstep.prove.checking import Checked, CheckTime, ProofChecker
from leanstep.prove.search import BestFirstSearch
from leanstep.prove.search import Sampling as SearchSampling
from leanstep.prove.strategy import CALLER_LEFT, STRATEGIES, Strategy
from leanstep.prove.target import Target, TargetError
from leanstep.prove.whole import Attempt, Sampling, WholeProver

log = logging.getLogger(__name__)

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
    ``abandoned``: turns true once the caller no longer waits (its HTTP client left, its MCP call was cancelled).
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
    abandoned: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ProveTimings:
    generation_ms: float
    checking_ms: float
    total_ms: float


@dataclass(frozen=True)
class ProveResult:
    """The answer (see the module docstring). ``check`` is the final check: the proof's, else the best
    failed one; ``stopped`` says why no proof was found (``timeout``, ``budget``, ``exhausted``,
    ``rejected``, ``client_left``, or a search session's refusal)."""

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


class ProvingFailed(RuntimeError):
    """The model (or its server) failed while a proof was looked for; the message names the error. Not the
    client's fault: the server answers it as unavailable (HTTP 503, or the same words as an MCP tool error)."""


class Prover:
    """Proves targets with one generator and one checker (and, for search, the proof sessions); thread-safe
    when they are."""

    def __init__(self, generator: Generator, checker: ProofChecker, config: Config,
                 sessions: SessionService | None = None) -> None:
        self.generator = generator
        self.checker = checker
        self.config = config
        self.whole = WholeProver(generator, checker, Sampling(config.temperatures, config.proof_max_new_tokens))
        self.search = None if sessions is None else BestFirstSearch(
            generator, sessions, SearchSampling(config.num_samples, config.temperatures, config.max_new_tokens),
            step_timeout=config.check_timeout, width=config.search_width)

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
        if strategy == "search" and self.search is None:
            raise ValueError("best-first search needs proof sessions, which this prover was not given")
        if strategy == "auto":
            return ("search", "whole") if self.search is not None else ("whole",)
        return (strategy,)

    def answer(self, request: ProveRequest) -> ProveResult:
        """:meth:`prove` for a client (``POST /prove``, the MCP ``prove`` tool): a request that names no goal
        (:class:`TargetError`) or asks for less time than the server allows (``LimitError``) is refused before
        any work; a failure while proving is :class:`ProvingFailed`; a caller that left gets ``RequestAbandoned``,
        as a generation's does (nobody reads the answer, a log does)."""
        target = self.target(request)
        self.budget(request.timeout)
        try:
            result = self.prove(request, target)
        except Exception as exc:
            log.exception("proving failed")
            raise ProvingFailed(f"{type(exc).__name__}: {exc}") from exc
        if result.stopped == CALLER_LEFT:
            raise RequestAbandoned(f"the client left; the proving stopped after {result.expansions} expansions "
                                   f"and {result.samples} samples in {result.timings.total_ms / 1000:.1f} s")
        return result

    def prove(self, request: ProveRequest, target: Target | None = None) -> ProveResult:
        """Look for a proof of the request's target within its budget."""
        started = time.monotonic()
        budget = self.budget(request.timeout)
        target = target or self.target(request)
        deadline = started + budget.seconds
        plan = self.strategies(request)
        run = _Run()
        for strategy in plan:
            if time.monotonic() >= deadline:
                run.stopped = "timeout"
                break
            if caller_left(request.abandoned):
                run.stopped = CALLER_LEFT
                break
            run.tried.append(strategy)
            if strategy == "search":
                share = deadline if len(plan) == 1 else started + SEARCH_SHARE * budget.seconds
                self._search(target, request, min(share, deadline), deadline, run)
            else:
                self._whole(target, request, deadline, run)
            if run.winner is not None or run.stopped == CALLER_LEFT:
                break
        total = (time.monotonic() - started) * 1000
        winner = run.winner
        final = winner[1] if winner is not None else run.last_check
        return ProveResult(
            proved=winner is not None, proof=winner[1].placed.proof if winner is not None else None,
            strategy=winner[0] if winner is not None else None, tried=tuple(run.tried), expansions=run.expansions,
            samples=len(run.attempts), rounds=run.rounds,
            timings=ProveTimings(run.generation * 1000, run.checking.wall * 1000, total), budget=budget,
            check=final, stopped=None if winner is not None else run.stopped, attempts=tuple(run.attempts),
            checking=run.checking)

    def _search(self, target: Target, request: ProveRequest, share: float, deadline: float, run: _Run) -> None:
        """Search until ``share``; a proof found is checked within ``deadline``."""
        assert self.search is not None
        found = self.search.run(target.origin(), expansions=request.expansions or self.config.prove_expansions,
                                deadline=share, seed=request.seed, abandoned=request.abandoned)
        run.expansions += found.expansions
        run.generation += found.generation_seconds
        run.checking.wall += found.checking_seconds
        run.stopped = found.stopped
        if found.tactics is None:
            return
        if caller_left(request.abandoned):  # the final check is for nobody
            run.stopped = CALLER_LEFT
            return
        placed = target.with_tactics(list(found.tactics))
        # a proof found gets its final check even when the search used up its share of the time (the verifier
        # starts no check with less than MIN_CHECK_SECONDS left)
        last = max(deadline, time.monotonic() + 2 * MIN_CHECK_SECONDS)
        (checked,) = self.checker.check([placed], self.config.timeout, deadline=last, time_spent=run.checking)
        run.last_check = checked
        if checked.proved:
            run.winner = ("search", checked)
        else:
            run.stopped = "rejected"  # the session closed the goal, the final check did not accept the proof

    def _whole(self, target: Target, request: ProveRequest, deadline: float, run: _Run) -> None:
        whole = self.whole.run(
            target, samples=request.samples or self.config.prove_samples,
            rounds=self.config.prove_rounds if request.rounds is None else request.rounds, deadline=deadline,
            check_timeout=self.config.timeout, first_valid=request.first_valid,
            order_seed=request.seed if request.random_order else None, abandoned=request.abandoned)
        run.attempts += whole.attempts
        run.rounds = whole.rounds
        run.generation += whole.generation_seconds
        run.checking.add(whole.checking)
        run.stopped = whole.stopped or "exhausted"
        checked = [a.checked for a in whole.attempts if a.checked is not None and a.checked.result is not None]
        if checked:
            run.last_check = checked[-1]
        if whole.proof is not None and whole.proof.checked is not None:
            run.winner = ("whole", whole.proof.checked)


@dataclass
class _Run:
    """What the strategies of one request have done so far."""

    tried: list[Strategy] = field(default_factory=list)
    winner: tuple[Strategy, Checked] | None = None
    last_check: Checked | None = None
    expansions: int = 0
    rounds: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    generation: float = 0.0
    checking: CheckTime = field(default_factory=CheckTime)
    stopped: str | None = None


__all__ = ["ProveRequest", "ProveResult", "ProveTimings", "Prover", "ProvingFailed"]
