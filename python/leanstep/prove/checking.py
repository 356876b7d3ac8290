"""Checking placed proofs: the server's verifier, at ``strict`` with the statement check, many at once.

The proofs of one target are one ``group`` of one verifier batch, and "first
valid wins" is the verifier's own (``VerifyOptions.first_valid``, see
``check.verify``): once a proof is valid, the target's later proofs whose check
has not started are answered ``skipped`` (here: ``result`` None), while every
proof before it is checked, so the index of the first proved proof is exact.
The verifier takes concurrent batches in turn, so targets checked at the same
time (an evaluation's problems) share the pool, each target's proofs checked
one after another when there are as many targets as checking threads.
``first_valid=False`` checks everything (an RL pipeline needs every reward). The
deadline is the verifier's too: no check starts with less than
``MIN_CHECK_SECONDS`` left, and none runs past it.

A proof at a position in a file that has errors elsewhere can be proved (no
concern of its own) without its check being ``valid``; it does not stop the
target's other checks, which then only cost time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from leanstep.check.verdict import Reason, Trust, Verdict
from leanstep.check.verify import ALLOWED_AXIOMS, BatchVerifier, Snippet, VerifyOptions, VerifyResult
from leanstep.prove.target import Placed


@dataclass(frozen=True)
class Checked:
    """One proof and what its check found; ``result`` None: not checked (an earlier proof of its target was
    proved, or the time was up)."""

    placed: Placed
    result: VerifyResult | None
    concerns: tuple[Reason, ...] = ()

    @property
    def proved(self) -> bool:
        return self.result is not None and not self.concerns

    @property
    def skipped(self) -> bool:
        return self.result is None


@dataclass
class CheckTime:
    """Wall seconds spent checking, and REPL seconds of the proofs checked (summed over parallel checks; an
    answer from the verifier's cache costs none)."""

    wall: float = 0.0
    repl: float = 0.0
    checked: int = 0
    skipped: int = 0

    def add(self, other: CheckTime) -> None:
        self.wall += other.wall
        self.repl += other.repl
        self.checked += other.checked
        self.skipped += other.skipped

    @classmethod
    def of(cls, checks: Sequence[Checked], wall: float) -> CheckTime:
        """What ``checks``, made in ``wall`` seconds, cost."""
        return cls(wall, sum(c.result.time for c in checks if c.result is not None and not c.result.cached),
                   sum(1 for c in checks if c.result is not None), sum(1 for c in checks if c.skipped))


class ProofChecker:
    """Checks a target's placed proofs on a verifier (see the module docstring); thread-safe."""

    def __init__(self, verifier: BatchVerifier, *, trust: Trust = Trust.STRICT,
                 allowed_axioms: frozenset[str] = ALLOWED_AXIOMS, timeout_origin: str = "wall-clock limit") -> None:
        if trust.rank < Trust.STRICT.rank:
            raise ValueError(f"proofs are checked at strict or above, not {trust}")
        self.verifier = verifier
        self.trust = trust
        self.allowed_axioms = allowed_axioms
        self.timeout_origin = timeout_origin

    def check(self, proofs: Sequence[Placed], timeout: float, *, first_valid: bool = True,
              deadline: float | None = None, time_spent: CheckTime | None = None) -> list[Checked]:
        """Every proof's check, in order, from one verifier batch (the proofs are one group); ``result=None`` for
        those not checked: after a valid one (``first_valid``), or not started before ``deadline`` (a
        ``time.monotonic()`` value)."""
        started = time.monotonic()
        snippets = [Snippet(str(k), p.code, p.target.checked_statement, group="target") for k, p in enumerate(proofs)]
        options = VerifyOptions(timeout=timeout, trust=self.trust, timeout_origin=self.timeout_origin,
                                first_valid=first_valid, deadline=deadline)
        results = self.verifier.verify_batch(snippets, options) if snippets else []
        checks = [self._checked(placed, result) for placed, result in zip(proofs, results, strict=True)]
        if time_spent is not None:
            time_spent.add(CheckTime.of(checks, time.monotonic() - started))
        return checks

    def _checked(self, placed: Placed, result: VerifyResult) -> Checked:
        if result.verdict is Verdict.SKIPPED:
            return Checked(placed, None)
        return Checked(placed, result, placed.concerns(result, self.allowed_axioms))


__all__ = ["CheckTime", "Checked", "ProofChecker"]
