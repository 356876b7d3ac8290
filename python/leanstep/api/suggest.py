"""Our ``POST /suggest``: the request model and the answer's shape.

The request carries the goal (``tactic_state``), the prefix, and either the
file text before the call (``context``) or the whole file and the call's
position (``source``, ``position``). A request that says where the call is may
leave the goal out: the server then reads it from Lean. The answer lists every
suggestion with its ``status``, remaining ``goals``, ``score`` and timings,
best first. :class:`Located` is how any request names a goal in a file.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from leanstep.api.common import (
    LeanText,
    Position,
    RequestTimeout,
    StrictModel,
    applied_timeout_json,
    require_together,
)
from leanstep.suggest import Suggestion, SuggestRequest, SuggestResult, Timings

MAX_SAMPLES = 256

class Located(StrictModel):
    """Where the goal is: the file text before the call (``context``), or the whole file and the call's position
    (what every request checked at a place in a file takes)."""

    context: LeanText | None = Field(default=None, description="the Lean file's text up to the call (as llmstep "
                                                              "sends it)")
    source: LeanText | None = Field(default=None, description="the whole Lean file; send `position` with it")
    position: Position | None = Field(default=None, description="where in `source` the goal is (the call's place)")
    file_name: str | None = Field(default=None, description="the file's name, for messages only")
    timeout: RequestTimeout | None = Field(default=None, description="checking budget in seconds (the server caps "
                                                                     "it at --check-timeout)")

    @model_validator(mode="after")
    def _source_needs_position(self) -> Located:
        require_together("source", self.source, "position", self.position)
        return self

    def goal_request(self, **more: Any) -> SuggestRequest:
        """The suggester's request for this goal, with ``more`` of its fields."""
        return SuggestRequest(context=self.context, source=self.source,
                              position=(self.position.line, self.position.column) if self.position else None,
                              file_name=self.file_name, timeout=self.timeout, **more)


class SuggestBody(Located):
    """``POST /suggest`` (DESIGN §3.1)."""

    tactic_state: str | None = Field(default=None, description="the goal, pretty-printed; left out, the server "
                                                               "reads it from Lean at `source`+`position` or `context`")
    prefix: str = Field(default="", description="what every suggestion starts with (llmstep's prefix)")
    n: int | None = Field(default=None, ge=1, le=MAX_SAMPLES,
                          description="candidates to sample (default: the server's)")
    check: bool = Field(default=True, description="check the candidates in Lean (needs `source`+`position` or "
                                                  "`context`)")
    include_invalid: bool = Field(default=False, description="also list the candidates Lean rejected, last")

    @model_validator(mode="after")
    def _needs_goal(self) -> SuggestBody:
        if self.tactic_state is None and self.source is None and self.context is None:
            raise ValueError("tactic_state: field required (or send `source` and `position`, or `context`, "
                             "for the server to read the goal from Lean)")
        return self

    def to_request(self) -> SuggestRequest:
        return self.goal_request(tactic_state=self.tactic_state, prefix=self.prefix, n=self.n, check=self.check,
                                 include_invalid=self.include_invalid)


def _suggestion_json(s: Suggestion) -> dict[str, Any]:
    out: dict[str, Any] = {"text": s.text, "status": s.status.value, "goals": list(s.goals), "score": s.score,
                           "time_ms": round(s.time_ms, 3)}
    if s.message is not None:
        out["message"] = s.message
    return out


def _timings_json(t: Timings) -> dict[str, float]:
    return {"generation_ms": round(t.generation_ms, 3), "checking_ms": round(t.checking_ms, 3),
            "total_ms": round(t.total_ms, 3), "setup_ms": round(t.setup_ms, 3)}


def suggest_answer_json(result: SuggestResult) -> dict[str, Any]:
    """``/suggest``'s answer; ``limits`` says which checking budget applied when candidates were checked."""
    out: dict[str, Any] = {
        "suggestions": [_suggestion_json(s) for s in result.suggestions],
        "timings": _timings_json(result.timings),
        "counts": {status.value: count for status, count in result.counts.items()},
        "checked": result.checked,
    }
    if result.goal is not None:
        out["goal"] = result.goal
    if result.context_error is not None:
        out["context_error"] = result.context_error
    if result.budget is not None:
        out["limits"] = {"check_timeout": applied_timeout_json(result.budget)}
    return out


__all__ = ["MAX_SAMPLES", "Located", "SuggestBody", "suggest_answer_json"]
