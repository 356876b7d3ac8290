"""Our ``POST /prove``: the request model and the answer's shape.

A request names its target as ``/suggest`` does (``source`` + ``position``, or
``context``, the first when both are sent: the goal at a call, proved by a
tactic script put in its place; ``llmqed`` sends ``llmstep``'s request) or
as a theorem (``header`` + ``statement``: the answer is the full theorem). It
may name a ``strategy`` (``search``, ``whole``, ``auto``: search, then whole
proofs), budgets (``expansions`` for search; ``samples`` and repair ``rounds``
for whole proofs) and a ``timeout``, which the server caps at
``--prove-timeout`` (``limits.prove_timeout`` says which limit applied).

The answer::

    {"proved": true, "proof": "nlinarith [sq_nonneg x]", "strategy": "whole", "tried": ["search", "whole"],
     "expansions": 12, "samples": 8, "rounds": 0,
     "timings": {"generation_ms": ..., "checking_ms": ..., "total_ms": ...},
     "check": {"verdict": "valid", "trust": "strict", "reasons": [...], "concerns": [...], "code": "..."},
     "stopped": null, "limits": {"prove_timeout": {...}}}

``check`` is the final check of the proof (or of the last failed attempt):
the verifier's verdict of ``code`` (the file up to the end of the declaration
with the proof in it) and, for a goal at a position, ``concerns``: the reasons
that are about the proof itself (``proved`` is true when there are none; the
verdict may still be ``invalid`` because of the file's own unfinished parts).
``stopped`` says why no proof was found: ``timeout``, ``budget``, ``exhausted``,
``rejected`` (the search closed the goal, the final check refused the proof) or
a search session's refusal, ``"<reason>: <message>"`` (``client_left``, when the
caller hung up, is answered 503 ``client left`` instead).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, model_validator

from leanstep.api.common import (
    INVALID_REQUEST,
    LeanText,
    StrictModel,
    applied_timeout_json,
    reason_json,
    require_together,
    verdict_json,
)
from leanstep.api.suggest import Position
from leanstep.limits import LimitError
from leanstep.prove.prover import ProveRequest, ProveResult, ProvingFailed
from leanstep.prove.strategy import Strategy
from leanstep.prove.target import TargetError
from leanstep.prove.whole import Attempt

MAX_EXPANSIONS = 4096
MAX_SAMPLES = 256
MAX_ROUNDS = 16
MAX_TIMEOUT_S = 3600.0
PROVING_FAILED = "proving failed"  # the model or its server failed (HTTP 503)
# What ``Prover.answer`` refuses a request with; :func:`prove_refusal` names each, for every door.
PROVE_REFUSALS = (TargetError, LimitError, ProvingFailed)


class ProveBody(StrictModel):
    """``POST /prove``: one target, optional strategy and budgets."""

    statement: LeanText | None = Field(default=None, description="a theorem to prove (`theorem name (args) : "
                                       "type`, `:= by sorry` or not); the answer's proof is the full theorem")
    header: LeanText = Field(default="", description="what `statement` needs before it: its imports "
                             "(`import Mathlib`)")
    source: LeanText | None = Field(default=None, description="a whole Lean file; with `position`, prove the goal "
                                    "there (the answer's proof is the tactics to put in its place)")
    position: Position | None = Field(default=None, description="where in `source` the goal is (a `sorry`)")
    context: LeanText | None = Field(default=None, description="the Lean file's text up to the goal (as llmstep "
                                     "sends it), instead of `source` + `position`")
    tactic_state: LeanText | None = Field(default=None, description="the goal, pretty-printed, when you have it "
                                          "(shown to whole-proof models)")
    strategy: Strategy | None = Field(default=None, description="search (best-first over next tactics), whole "
                                      "(complete proofs, repaired with Lean's errors) or auto (search, then whole); "
                                      "default: the server's --strategy")
    expansions: int | None = Field(default=None, ge=1, le=MAX_EXPANSIONS, description="proof states the search "
                                   "may expand (default: the server's --prove-expansions)")
    samples: int | None = Field(default=None, ge=1, le=MAX_SAMPLES, description="whole proofs to sample "
                                "(default: the server's --prove-samples)")
    rounds: int | None = Field(default=None, ge=0, le=MAX_ROUNDS, description="repair rounds: failed proofs sent "
                               "back with Lean's errors (default: the server's --prove-rounds)")
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False, description="seconds "
                                  "to look for a proof (the server caps it at --prove-timeout)")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the search's seed: the same seed and model "
                      "search the same way")

    @model_validator(mode="after")
    def _one_target(self) -> ProveBody:
        require_together("source", self.source, "position", self.position)
        at_call = self.source is not None or self.context is not None
        if (self.statement is not None) == at_call:
            got = "; got `statement` and a position" if at_call else ""
            raise ValueError(f"name one target: `statement` (with `header`), or `source` and `position` "
                             f"(or `context`){got}")
        return self

    def to_request(self) -> ProveRequest:
        return ProveRequest(
            strategy=self.strategy, statement=self.statement, header=self.header, source=self.source,
            position=(self.position.line, self.position.column) if self.position else None,
            context=self.context, tactic_state=self.tactic_state, expansions=self.expansions,
            samples=self.samples, rounds=self.rounds, timeout=self.timeout, seed=self.seed)


def prove_refusal(exc: TargetError | LimitError | ProvingFailed) -> tuple[str, str]:
    """The error name and detail of a request :meth:`~leanstep.prove.prover.Prover.answer` refused, the same on
    every door (HTTP, MCP): no goal where it names one, or a timeout below the floor, is a wrong field."""
    return (PROVING_FAILED if isinstance(exc, ProvingFailed) else INVALID_REQUEST), str(exc)


def prove_answer_json(result: ProveResult) -> dict[str, Any]:
    """``/prove``'s answer (see the module docstring)."""
    timings = result.timings
    out: dict[str, Any] = {
        "proved": result.proved,
        "proof": result.proof,
        "strategy": result.strategy,
        "tried": list(result.tried),
        "expansions": result.expansions,
        "samples": result.samples,
        "rounds": result.rounds,
        "timings": {"generation_ms": round(timings.generation_ms, 3), "checking_ms": round(timings.checking_ms, 3),
                    "total_ms": round(timings.total_ms, 3)},
        "check": None,
        "stopped": result.stopped,
        "limits": {"prove_timeout": applied_timeout_json(result.budget)},
    }
    check = result.check
    if check is not None and check.result is not None:
        verdict = check.result
        out["check"] = {**verdict_json(verdict.verdict, verdict.trust, verdict.reasons),
                        "concerns": [reason_json(r) for r in check.concerns], "code": check.placed.code}
    return out


def attempt_record(problem: str, attempt: Attempt) -> dict[str, Any]:
    """One whole-proof attempt as ``leanstep eval`` writes it (a JSONL line): the model's code, and the check
    (``skipped``: not checked, an earlier sample of the problem was proved, or the budget ran out first)."""
    out: dict[str, Any] = {"problem": problem, "strategy": "whole", "round": attempt.round, "sample": attempt.line,
                           "proved": attempt.proved, "score": attempt.score if math.isfinite(attempt.score) else None,
                           "code": attempt.code}
    checked = attempt.checked
    if checked is None:
        out["unplaced"] = attempt.unplaced
    elif checked.result is None:
        out["skipped"] = True
    else:
        out.update(verdict_json(checked.result.verdict, checked.result.trust, checked.result.reasons))
        out["concerns"] = [reason_json(r) for r in checked.concerns]
        out["time"] = round(checked.result.time, 6)
        out["cached"] = checked.result.cached
    return out


def run_record(problem: str, seed: int, result: ProveResult) -> dict[str, Any]:
    """One search as ``leanstep eval`` writes it: the answer ``/prove`` would give, with the problem and seed."""
    return {"problem": problem, "seed": seed, **prove_answer_json(result)}


__all__ = ["MAX_EXPANSIONS", "MAX_ROUNDS", "MAX_SAMPLES", "MAX_TIMEOUT_S", "PROVE_REFUSALS", "PROVING_FAILED",
           "ProveBody", "attempt_record", "prove_answer_json", "prove_refusal", "run_record"]
