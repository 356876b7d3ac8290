"""Checking placed proofs: the server's verifier, at ``strict`` with the statement check, many at once.

Proofs of one target form a group. With ``first_valid`` (the default) a group
stops at its first proved proof: the rest are answered ``None`` (skipped), not
checked, which is what pass@k and a prover need and saves the REPL time of the
samples after it. Skipping goes in waves: a group's proofs are checked a wave
at a time, in order, and no wave starts after a wave with a proved one; so
every proof before the first proved one is always checked, and the first
proved index is exact. A wave is the pool's ``lanes`` shared among the groups
being checked at that moment (one group alone fills the pool; eight groups of
an evaluation on eight REPLs check one proof each), so skipping loses as
little as it can without leaving REPLs idle. ``first_valid=False`` checks
everything at once (an RL pipeline needs every reward).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from leanstep.check.verdict import Reason, Trust
from leanstep.check.verify import ALLOWED_AXIOMS, BatchVerifier, Snippet, VerifyOptions, VerifyResult
from leanstep.prove.target import Placed

MIN_CHECK_SECONDS = 0.5  # a check with less time than this left is not started


@dataclass(frozen=True)
class Checked:
    """One proof and what its check found; ``result`` None: not checked (its group already had a proof, or the
    time was up)."""

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


class ProofChecker:
    """Checks groups of placed proofs on a verifier (see the module docstring); thread-safe."""

    def __init__(self, verifier: BatchVerifier, *, lanes: int, trust: Trust = Trust.STRICT,
                 allowed_axioms: frozenset[str] = ALLOWED_AXIOMS, timeout_origin: str = "wall-clock limit") -> None:
        if trust.rank < Trust.STRICT.rank:
            raise ValueError(f"proofs are checked at strict or above, not {trust}")
        self.verifier = verifier
        self.lanes = max(1, lanes)
        self.trust = trust
        self.allowed_axioms = allowed_axioms
        self.timeout_origin = timeout_origin
        self._lock = threading.Lock()
        self._groups = 0  # groups being checked now: they share the lanes

    def options(self, timeout: float) -> VerifyOptions:
        return VerifyOptions(timeout=timeout, trust=self.trust, timeout_origin=self.timeout_origin)

    def check(self, proofs: Sequence[Placed], timeout: float, *, first_valid: bool = True,
              deadline: float | None = None, time_spent: CheckTime | None = None) -> list[Checked]:
        """Every proof's check, in order; ``result=None`` for those not checked: skipped (``first_valid``)
        or not started before ``deadline`` (a ``time.monotonic()`` value; each check ends by it too)."""
        started = time.monotonic()
        out: list[Checked] = []
        with self._lock:
            self._groups += 1
        try:
            while len(out) < len(proofs):
                remaining = timeout if deadline is None else min(timeout, deadline - time.monotonic())
                if (first_valid and any(c.proved for c in out)) or remaining < MIN_CHECK_SECONDS:
                    out += [Checked(p, None) for p in proofs[len(out):]]
                    break
                with self._lock:
                    width = max(1, self.lanes // self._groups) if first_valid else len(proofs)
                wave = proofs[len(out):len(out) + width]
                snippets = [Snippet(str(len(out) + k), p.code, p.target.checked_statement)
                            for k, p in enumerate(wave)]
                results = self.verifier.verify_batch(snippets, self.options(remaining))
                out += [Checked(p, r, p.concerns(r, self.allowed_axioms)) for p, r in zip(wave, results, strict=True)]
        finally:
            with self._lock:
                self._groups -= 1
        if time_spent is not None:
            with self._lock:
                time_spent.add(CheckTime(time.monotonic() - started,
                                         sum(c.result.time for c in out if c.result and not c.result.cached),
                                         sum(1 for c in out if c.result), sum(1 for c in out if c.skipped)))
        return out

    def check_groups(self, groups: Sequence[Sequence[Placed]], timeout: float, *, first_valid: bool = True,
                     on_group: Callable[[int, list[Checked]], None] | None = None,
                     time_spent: CheckTime | None = None) -> list[list[Checked]]:
        """:meth:`check` for many groups at once (``lanes`` groups in flight); ``on_group(index, checks)`` as
        each group is done."""
        results: list[list[Checked]] = [[] for _ in groups]

        def run(index: int) -> None:
            results[index] = self.check(groups[index], timeout, first_valid=first_valid, time_spent=time_spent)
            if on_group is not None:
                on_group(index, results[index])

        with ThreadPoolExecutor(self.lanes, thread_name_prefix="prove-check") as executor:
            for future in [executor.submit(run, i) for i in range(len(groups))]:
                future.result()
        return results


__all__ = ["CheckTime", "Checked", "ProofChecker"]
