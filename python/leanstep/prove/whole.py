"""Whole-proof generation with repair.

Round 0 samples ``samples`` complete proofs of the target in one generation
request and checks them all in parallel (``strict``, statement check). Each
later round, up to ``rounds``, sends every failed proof back, the code Lean
checked and what it said, and checks the one repair each gets. The first
proved proof wins; the budget's deadline stops everything, between
generation and checking as well, and so does a caller that left
(``abandoned``, asked before each generation and before each round's checks;
the generation is told too, and a batched one drops it). Every attempt is
kept, so an evaluation can write them all and a caller can see where the time
went.

A proof the model wrote but that cannot be placed at the target (it rewrote
the tactics before an ``llmqed`` call) counts as a sample and is not checked.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import leanstep.check.verdict as codes
from leanstep.check.verify import MIN_CHECK_SECONDS
from leanstep.generate.base import GenerationRequest, Generator
from leanstep.generate.batching import RequestAbandoned, caller_left
from leanstep.generate.proofs import ProofFeedback, ProofTask
from leanstep.prove.checking import Checked, CheckTime, ProofChecker
from leanstep.prove.strategy import CALLER_LEFT
from leanstep.prove.target import Placed, Target

MAX_FEEDBACK_CHARS = 4000
UNPLACED = "the proof rewrites the tactics before the call, so it cannot be put there"


@dataclass(frozen=True)
class Sampling:
    """How proofs are sampled: temperatures (one call each) and the longest proof in tokens."""

    temperatures: tuple[float, ...] = (1.0,)
    max_new_tokens: int = 1024


@dataclass(frozen=True)
class Attempt:
    """One whole proof: its round, the sample line it repairs (its index in round 0), the model's code
    and, when it could be placed and checked, what the check found."""

    round: int
    line: int
    code: str
    score: float
    checked: Checked | None
    unplaced: str | None = None  # why the proof could not be placed at the target

    @property
    def proved(self) -> bool:
        return self.checked is not None and self.checked.proved


@dataclass
class WholeRun:
    """What a whole-proof run did: every attempt, the winner, the rounds it took, where the time went."""

    attempts: list[Attempt] = field(default_factory=list)
    rounds: int = 0  # repair rounds that ran
    generation_seconds: float = 0.0
    checking: CheckTime = field(default_factory=CheckTime)
    stopped: str | None = None  # why the run ended without a proof (timeout, client_left), None: out of rounds

    @property
    def proof(self) -> Attempt | None:
        return next((a for a in self.attempts if a.proved), None)

    @property
    def samples(self) -> int:
        return len(self.attempts)


def feedback(checked: Checked, limit: int = MAX_FEEDBACK_CHARS) -> ProofFeedback:
    """What the model is told about a failed proof: the code Lean checked, Lean's errors with their positions
    in that code, then the verdict's other reasons (a forbidden construct, an axiom, a timeout, ...)."""
    result = checked.result
    lines = [f"{m.pos.line}:{m.pos.column}: error: {m.data}" for m in result.messages if m.is_error] \
        if result is not None else []
    for reason in checked.concerns:
        if reason.code != codes.LEAN_ERROR:  # Lean's errors are listed above, in full
            where = f"{reason.pos.line}:{reason.pos.column}: " if reason.pos is not None else ""
            lines.append(f"{where}{reason.code}: {reason.message}")
    text = "\n".join(lines) or "the proof was rejected"
    if len(text) > limit:
        text = text[:limit] + "\n... (truncated)"
    return ProofFeedback(checked.placed.code, text)


@dataclass(frozen=True)
class _Draft:
    """A proof the model wrote for ``task`` (line ``line``), placed at the target when it could be."""

    line: int
    task: ProofTask
    code: str
    score: float
    placed: Placed | None


class WholeProver:
    """Samples and repairs whole proofs with a generator, checked by a :class:`ProofChecker`."""

    def __init__(self, generator: Generator, checker: ProofChecker, sampling: Sampling) -> None:
        self.generator = generator
        self.checker = checker
        self.sampling = sampling

    def run(self, target: Target, *, samples: int, rounds: int, deadline: float, check_timeout: float,
            first_valid: bool = True, order_seed: int | None = None,
            on_attempt: Callable[[Attempt], None] | None = None,
            abandoned: Callable[[], bool] | None = None) -> WholeRun:
        """Prove ``target`` within ``deadline`` (a ``time.monotonic()`` value), until ``abandoned`` says the
        caller left.

        The first samples are checked as distinct proofs, best score first; with ``order_seed``,
        as drawn instead: every sample (duplicates too) in a random order fixed by the seed, which
        is what an unbiased pass@k with first valid wins needs.
        """
        run = WholeRun()
        shown_header = target.header + ("\n\n" + target.preamble if target.preamble.strip() else "")
        pending = [(-1, ProofTask(shown_header, target.prefix))]  # line -1: the first samples
        for round_ in range(rounds + 1):
            if not pending:
                break
            run.rounds = round_
            drafts = self._generate(pending, samples, target, run, deadline, order_seed, abandoned)
            if run.stopped == CALLER_LEFT or caller_left(abandoned):  # nobody waits for these checks
                run.stopped = CALLER_LEFT
                break
            to_check = [d.placed for d in drafts if d.placed is not None]
            checks = iter(self.checker.check(to_check, check_timeout, first_valid=first_valid, deadline=deadline,
                                             time_spent=run.checking) if to_check else [])
            pending = []
            for draft in drafts:
                checked = next(checks, None) if draft.placed is not None else None
                attempt = Attempt(round_, draft.line, draft.code, draft.score, checked,
                                  None if draft.placed is not None else UNPLACED)
                run.attempts.append(attempt)
                if on_attempt is not None:
                    on_attempt(attempt)
                if checked is not None and checked.result is not None and not checked.proved:
                    task = draft.task
                    pending.append((draft.line, ProofTask(task.header, task.statement,
                                                          (*task.feedback, feedback(checked)))))
            if run.proof is None and time.monotonic() >= deadline - MIN_CHECK_SECONDS:
                run.stopped = "timeout"
            if run.proof is not None or run.stopped is not None:
                break
        return run

    def _generate(self, pending: list[tuple[int, ProofTask]], samples: int, target: Target, run: WholeRun,
                  deadline: float, order_seed: int | None, abandoned: Callable[[], bool] | None) -> list[_Draft]:
        """Proofs for each pending task: ``samples`` for the first request, one repair for each failed line;
        those generated before the time was up or the caller left (``run.stopped`` says which)."""
        drafts: list[_Draft] = []
        for line, task in pending:
            if time.monotonic() >= deadline:
                run.stopped = "timeout"
                break
            if caller_left(abandoned):
                run.stopped = CALLER_LEFT
                break
            first = line < 0
            request = GenerationRequest(
                tactic_state=target.goal or "", num_samples=samples if first else 1,
                temperatures=self.sampling.temperatures if first else self.sampling.temperatures[:1],
                max_new_tokens=self.sampling.max_new_tokens, proof=task, abandoned=abandoned)
            started = time.monotonic()
            try:
                candidates = self.generator.generate(request)
            except RequestAbandoned:
                run.stopped = CALLER_LEFT
                break
            finally:
                run.generation_seconds += time.monotonic() - started
            if first and order_seed is not None:
                candidates = [c for c in candidates for _ in range(c.count)]
                random.Random(order_seed).shuffle(candidates)
            for k, candidate in enumerate(candidates[:samples] if first else candidates[:1]):
                drafts.append(_Draft(k if first else line, task, candidate.text, candidate.score,
                                     target.with_code(candidate.text)))
        return drafts


__all__ = ["MAX_FEEDBACK_CHARS", "Attempt", "Sampling", "WholeProver", "WholeRun", "feedback"]
