"""The MCP tools' shapes: the arguments the HTTP routes do not already define, and every tool's output.

The MCP server (``leanstep.mcp``) publishes these models' JSON schemas as its
tools' input and output schemas and validates with them, so a tool's schema and
its answers cannot drift apart. Arguments reuse the HTTP routes' strict models
and field validators (``suggest`` takes :class:`~leanstep.api.suggest.SuggestBody`
itself, ``session_start`` :class:`~leanstep.api.sessions.StartBody`, ``prove``
:class:`~leanstep.api.prove.ProveBody`, and the others build on them), so a
wrong field gets the words a 422 would carry. Answers are built by the HTTP
encoders where the shape is the same (suggestions, sessions, steps, session
proofs, ``prove``); ``verify`` answers one proof, flat: its verdict, the
reasons with their stable codes, and Lean's messages with their positions in the
code as sent. ``multi_attempt`` answers one shape whether its tactics ran at a
place in a file or on a session's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from leanstep.api.common import RequestTimeout, StrictModel, applied_timeout_json, reason_json, require_together
from leanstep.api.kimina import Stated, TrustName, positive_timeout
from leanstep.api.prove import prove_answer_json
from leanstep.api.sessions import (
    MAX_TACTICS_PER_BODY,
    Tactic,
    TacticBody,
    proof_json,
    session_json,
    session_list_json,
    step_json,
)
from leanstep.api.suggest import Located, suggest_answer_json
from leanstep.check.sessions import ProofScript, SessionSummary, SessionView, StepResult
from leanstep.check.tactics import CandidateStatus
from leanstep.check.verdict import Trust
from leanstep.check.verify import Snippet, VerifyOptions, VerifyResult
from leanstep.limits import AppliedTimeout, LimitSource
from leanstep.prove.prover import ProveResult
from leanstep.suggest import SuggestRequest, SuggestResult

VerdictName = Literal["valid", "invalid", "timeout", "error", "skipped"]
StatusName = Literal["closes_goal", "valid", "unchecked", "invalid"]

# --------------------------------------------------------------------------- #
# Arguments


class VerifyInput(Stated):
    """The `verify` tool's arguments: one Lean file to check, optionally against the statement it must prove."""

    code: str = Field(description="a complete Lean file: its imports, then the declarations to check")
    trust: TrustName | None = Field(default=None, description="lenient (no error, no sorry), strict (+ source "
                                    "policy, axiom audit, statement check) or sealed (+ kernel re-check); "
                                    "default: the server's --trust")
    timeout: float | None = Field(default=None, description="seconds the proof may take (the server caps it at "
                                  "--timeout and refuses less than --min-timeout)")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return positive_timeout(value)

    def to_snippet(self) -> Snippet:
        return Snippet("code", self.code, self.stated)

    def to_options(self, timeout: AppliedTimeout, server_trust: Trust) -> VerifyOptions:
        return VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(),
                             trust=Trust(self.trust) if self.trust is not None else server_trust)


class MultiAttemptInput(Located):
    """`multi_attempt`'s arguments: tactics, and the goal they run on: a place in a file, or a session's state."""

    tactics: list[Tactic] = Field(min_length=1, max_length=MAX_TACTICS_PER_BODY,
                                  description="the tactics to try, each one on its own at the same goal (the "
                                              "server takes at most --max-attempt-tactics)")
    session: str | None = Field(default=None, description="a proof session's id: run the tactics on its state "
                                "`state` (each accepted tactic makes a new state) instead of at a place in a file")
    state: int | None = Field(default=None, ge=0, description="the session's state to run the tactics on")
    timeout: RequestTimeout | None = Field(default=None, description="seconds the tactics may take together (the "
                                           "server caps it at --check-timeout in a file, --session-timeout in a "
                                           "session)")

    @model_validator(mode="after")
    def _one_goal(self) -> MultiAttemptInput:
        in_file = self.source is not None or self.context is not None
        if self.session is not None or self.state is not None:
            require_together("session", self.session, "state", self.state)
            if in_file:
                raise ValueError("send either `session` and `state` or a place in a file (`source` and `position`, "
                                 "or `context`), not both")
        elif not in_file:
            raise ValueError("send `source` and `position` (or `context`), or `session` and `state`: the tactics "
                             "run at that goal")
        return self

    def to_request(self) -> SuggestRequest:
        return self.goal_request()


class SessionRef(StrictModel):
    session: str = Field(description="the session's id, as `session_start` answered it")


class StateRef(SessionRef):
    state: int = Field(ge=0, description="a state of the session (its roots, or a state a step made)")


class SessionStepInput(TacticBody, StateRef):
    """`session_step`'s arguments: one tactic on one state of a session."""


# --------------------------------------------------------------------------- #
# Structured output


class TimeoutLimit(BaseModel):
    """Which limit applied and why (`request`: the client's own; `server`: capped or not sent; `default`)."""

    seconds: float
    requested: float | None
    source: LimitSource
    max: float
    min: float | None = None


class Reason(BaseModel):
    """Why a verdict is not `valid`: a stable code, a message, and the place in the code when one is to blame."""

    code: str
    message: str
    line: int | None = None
    column: int | None = None


class LeanMessage(BaseModel):
    """One of Lean's messages; 1-based lines and 0-based columns in the code as sent."""

    severity: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None
    text: str


class SorryAt(BaseModel):
    """A `sorry` Lean reported, with the goal it stands for."""

    goal: str
    line: int | None = None
    column: int | None = None


class VerifyLimits(BaseModel):
    timeout: TimeoutLimit
    import_timeout: TimeoutLimit


class VerifyOutput(BaseModel):
    """`verify`'s answer: the verdict at the trust level it was checked at (`docs/verdicts.md`)."""

    verdict: VerdictName
    trust: TrustName | None = None
    reasons: list[Reason] = Field(default_factory=list)
    messages: list[LeanMessage] = Field(default_factory=list)
    sorries: list[SorryAt] = Field(default_factory=list)
    axioms: dict[str, list[str]] | None = None
    error: str | None = None
    time: float
    cached: bool = False
    limits: VerifyLimits


class Suggestion(BaseModel):
    text: str
    status: StatusName
    goals: list[str]
    score: float
    time_ms: float
    message: str | None = None


class Timings(BaseModel):
    generation_ms: float
    checking_ms: float
    total_ms: float
    setup_ms: float


class Counts(BaseModel):
    closes_goal: int = 0
    valid: int = 0
    unchecked: int = 0
    invalid: int = 0


class CheckLimits(BaseModel):
    check_timeout: TimeoutLimit


class SuggestOutput(BaseModel):
    """`suggest`'s answer: the model's candidates, closes-goal first, as `POST /suggest` answers."""

    suggestions: list[Suggestion]
    timings: Timings
    counts: Counts
    checked: bool
    goal: str | None = None
    context_error: str | None = None
    limits: CheckLimits | None = None


class LeanNote(BaseModel):
    severity: str
    data: str


class Attempt(BaseModel):
    """One tactic's verdict: `closes_goal`, `valid` (goals left), `invalid` (Lean's error in `message`) or
    `unchecked` (it did not run: `message` says why). On a session, `state` is the state it made."""

    tactic: str
    status: StatusName
    goals: list[str]
    message: str | None = None
    messages: list[LeanNote] = Field(default_factory=list)
    state: int | None = None
    time_ms: float


class AttemptLimits(BaseModel):
    check_timeout: TimeoutLimit | None = None  # at a place in a file
    session_timeout: TimeoutLimit | None = None  # on a session's state


class AttemptOutput(BaseModel):
    """`multi_attempt`'s answer: every tactic's verdict, in the order sent."""

    attempts: list[Attempt]
    counts: Counts
    goal: str | None = None
    context_error: str | None = None
    limits: AttemptLimits


class StateOut(BaseModel):
    id: int
    goals: list[str]
    status: Literal["open", "proved"]
    parent: int | None
    tactic: str | None
    depth: int


class SessionLimitsOut(BaseModel):
    session_timeout: TimeoutLimit


class SessionOutput(BaseModel):
    """A proof session: its root states (the goals it started from) and every state its steps made."""

    id: str
    roots: list[int]
    states: list[StateOut]
    expires_in: float
    limits: SessionLimitsOut | None = None


class StepOutput(BaseModel):
    """One tactic run on a state; `state` is the new state when Lean accepted it."""

    tactic: str
    status: StatusName
    state: int | None
    goals: list[str]
    messages: list[LeanNote]
    time_ms: float
    message: str | None = None
    limits: SessionLimitsOut


class ProofOutput(BaseModel):
    """The tactics from a root to a proved state; `proof` is them one per line, to put in place of the `sorry`."""

    session: str
    state: int
    root: int
    tactics: list[str]
    proof: str


class NoArguments(StrictModel):
    """The arguments of a tool that takes none."""


class SessionSummaryOut(BaseModel):
    """An open session: how many root states, states and proved states it holds; seconds before it closes idle."""

    id: str
    roots: int
    states: int
    proved: int
    expires_in: float


class SessionListOutput(BaseModel):
    """The caller's open sessions, oldest first, without their trees (`session_inspect` gives one's tree)."""

    sessions: list[SessionSummaryOut]


class ClosedOutput(BaseModel):
    id: str
    closed: bool


class ProveTimings(BaseModel):
    generation_ms: float
    checking_ms: float
    total_ms: float


class ProofCheck(BaseModel):
    """The final check of the proof (or of the last failed attempt) at `trust`: the verdict of `code`, the file up
    to the end of the declaration with the proof in it. For a goal in a file, `concerns` are the reasons about the
    proof itself: it counts as proved when there are none, whatever the rest of the file leaves unfinished."""

    verdict: VerdictName
    trust: TrustName | None = None
    reasons: list[Reason] = Field(default_factory=list)
    concerns: list[Reason] = Field(default_factory=list)
    code: str


class ProveLimits(BaseModel):
    prove_timeout: TimeoutLimit


class ProveOutput(BaseModel):
    """`prove`'s answer, as `POST /prove` answers: whether it is proved, the proof, which strategy found it, the
    budget it took, where the time went; `stopped` says why no proof was found (`timeout`, `budget`, `exhausted`)."""

    proved: bool
    proof: str | None
    strategy: Literal["search", "whole"] | None
    tried: list[Literal["search", "whole"]]
    expansions: int
    samples: int
    rounds: int
    timings: ProveTimings
    check: ProofCheck | None
    stopped: str | None
    limits: ProveLimits


def _timeout_limit(limit: AppliedTimeout) -> TimeoutLimit:
    return TimeoutLimit.model_validate(applied_timeout_json(limit))


def verify_output(result: VerifyResult, timeout: AppliedTimeout, import_limit: AppliedTimeout) -> VerifyOutput:
    """One proof's answer, flat: verdict, reasons, Lean's messages and sorries, the limits that applied."""
    messages = [LeanMessage(severity=m.severity, line=m.pos.line, column=m.pos.column,
                            end_line=m.end_pos.line if m.end_pos else None,
                            end_column=m.end_pos.column if m.end_pos else None, text=m.data)
                for m in result.messages]
    sorries = [SorryAt(goal=s.goal, line=s.pos.line if s.pos else None, column=s.pos.column if s.pos else None)
               for s in result.sorries]
    return VerifyOutput(
        verdict=result.verdict.value, trust=result.trust.value if result.trust is not None else None,
        reasons=[Reason.model_validate(reason_json(r)) for r in result.reasons], messages=messages,
        sorries=sorries, axioms=result.axioms, error=result.error or result.repl_message,
        time=round(result.time, 6), cached=result.cached,
        limits=VerifyLimits(timeout=_timeout_limit(timeout), import_timeout=_timeout_limit(import_limit)))


def suggest_output(result: SuggestResult) -> SuggestOutput:
    return SuggestOutput.model_validate(suggest_answer_json(result))


def _counts(statuses: list[CandidateStatus]) -> Counts:
    return Counts(**{status.value: statuses.count(status) for status in CandidateStatus})


def file_attempt_output(result: SuggestResult) -> AttemptOutput:
    """Tactics tried at a place in a file (``Suggester.attempt``)."""
    attempts = [Attempt(tactic=s.text, status=s.status.value, goals=list(s.goals), message=s.message,
                        time_ms=round(s.time_ms, 3)) for s in result.suggestions]
    limits = AttemptLimits(check_timeout=_timeout_limit(result.budget) if result.budget is not None else None)
    return AttemptOutput(attempts=attempts, counts=_counts([s.status for s in result.suggestions]), goal=result.goal,
                         context_error=result.context_error, limits=limits)


def session_attempt_output(results: tuple[StepResult, ...], budget: AppliedTimeout) -> AttemptOutput:
    """Tactics tried on a session's state (``SessionService.attempt``)."""
    return AttemptOutput(attempts=[Attempt.model_validate(step_json(r)) for r in results],
                         counts=_counts([r.status for r in results]),
                         limits=AttemptLimits(session_timeout=_timeout_limit(budget)))


def session_output(view: SessionView, budget: AppliedTimeout | None = None) -> SessionOutput:
    limits = {"limits": {"session_timeout": applied_timeout_json(budget)}} if budget is not None else {}
    return SessionOutput.model_validate({**session_json(view), **limits})


def session_list_output(summaries: Sequence[SessionSummary]) -> SessionListOutput:
    return SessionListOutput.model_validate(session_list_json(summaries))


def step_output(result: StepResult, budget: AppliedTimeout) -> StepOutput:
    return StepOutput.model_validate({**step_json(result), "limits": {"session_timeout": applied_timeout_json(budget)}})


def proof_output(session: str, script: ProofScript) -> ProofOutput:
    return ProofOutput.model_validate(proof_json(session, script))


def prove_output(result: ProveResult) -> ProveOutput:
    return ProveOutput.model_validate(prove_answer_json(result))


def output_json(output: BaseModel) -> dict[str, Any]:
    """A tool's structured content: the model's JSON (what its output schema describes, nulls included)."""
    return output.model_dump(mode="json")


__all__ = [
    "AttemptOutput", "ClosedOutput", "MultiAttemptInput", "NoArguments", "ProofOutput", "ProveOutput",
    "SessionListOutput", "SessionOutput", "SessionRef", "SessionStepInput", "StateRef", "StepOutput", "SuggestOutput",
    "VerifyInput", "VerifyOutput", "file_attempt_output", "output_json", "proof_output", "prove_output",
    "session_attempt_output", "session_list_output", "session_output", "step_output", "suggest_output",
    "verify_output",
]
