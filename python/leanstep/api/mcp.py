"""The MCP tools' shapes: the arguments of ``verify`` and the structured output of every tool.

The MCP server (``leanstep.mcp``) publishes these models' JSON schemas as its
tools' input and output schemas and validates with them, so a tool's schema and
its answers cannot drift apart. Arguments are validated by the same strict
models and field validators as the HTTP routes (``suggest`` takes
:class:`~leanstep.api.suggest.SuggestBody` itself, ``multi_attempt``
:class:`~leanstep.api.suggest.AttemptBody`), so a wrong field gets the words a
422 would carry. Answers are built by the HTTP encoders where the shape is the
same (suggestions); ``verify`` answers one proof, flat: its verdict, the reasons
with their stable codes, and Lean's messages with their positions in the code as sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from leanstep.api.common import applied_timeout_json, reason_json
from leanstep.api.kimina import Stated, TrustName, positive_timeout
from leanstep.api.suggest import suggest_answer_json
from leanstep.check.verdict import Trust
from leanstep.check.verify import Snippet, VerifyOptions, VerifyResult
from leanstep.limits import AppliedTimeout
from leanstep.suggest import SuggestResult

VerdictName = Literal["valid", "invalid", "timeout", "error"]
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


# --------------------------------------------------------------------------- #
# Structured output


class TimeoutLimit(BaseModel):
    """Which limit applied and why (`request`: the client's own; `server`: capped or not sent; `default`)."""

    seconds: float
    requested: float | None
    source: Literal["request", "server", "default"]
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


class _Checked(BaseModel):
    """What a check at one goal reports beside its list (`/suggest`'s answer less the list)."""

    timings: Timings
    counts: Counts
    checked: bool
    goal: str | None = None
    context_error: str | None = None
    limits: CheckLimits | None = None


class SuggestOutput(_Checked):
    """`suggest`'s answer: the model's candidates, closes-goal first, as `POST /suggest` answers."""

    suggestions: list[Suggestion]


class AttemptOutput(_Checked):
    """`multi_attempt`'s answer: every tactic's verdict, in the order sent."""

    attempts: list[Suggestion]


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


def attempt_output(result: SuggestResult) -> AttemptOutput:
    return AttemptOutput.model_validate(suggest_answer_json(result, list_key="attempts"))


def output_json(output: BaseModel) -> dict[str, Any]:
    """A tool's structured content: the model's JSON (what its output schema describes, nulls included)."""
    return output.model_dump(mode="json")


__all__ = [
    "AttemptOutput", "SuggestOutput", "VerifyInput", "VerifyOutput", "attempt_output", "output_json",
    "suggest_output", "verify_output",
]
