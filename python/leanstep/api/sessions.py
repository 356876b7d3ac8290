"""Proof sessions on the wire: the request bodies of the ``/sessions`` routes and the shapes of their answers.

A session starts from exactly one origin: ``code`` (a file whose ``sorry``s are
the goals), ``source`` + ``position`` (the goal at a place in a file, as
``/suggest`` reads it) or ``statement`` (+ ``header``, its import lines). States
are numbered from 0 within their session; each carries its goals, its
``status`` (``open`` or ``proved``), and how it was reached (``parent``,
``tactic``). A step answers with the checker's status (``closes_goal | valid |
invalid | unchecked``), the new state's id when Lean accepted the tactic, and
everything Lean said. An API key's open sessions are listed with their counts
of roots, states and proved states, not their trees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from leanstep.api.common import (
    INVALID_REQUEST,
    LeanText,
    Position,
    RequestTimeout,
    StrictModel,
    lean_text,
    require_together,
)
from leanstep.check.sessions import (
    BadRequest,
    FromCode,
    FromPosition,
    FromStatement,
    NotProved,
    Origin,
    ProofScript,
    SessionError,
    SessionLimitReached,
    SessionNotFound,
    SessionSummary,
    SessionView,
    StateLimitReached,
    StateNotFound,
    StateUnreachable,
    StateView,
    StepResult,
    Unavailable,
)
from leanstep.limits import LimitError

REFUSALS: dict[type[SessionError], str] = {  # the error name of each refusal, on every door (HTTP, MCP)
    SessionNotFound: "session not found",
    StateNotFound: "state not found",
    StateLimitReached: "state limit reached",
    NotProved: "state not proved",
    StateUnreachable: "state unreachable",
    BadRequest: INVALID_REQUEST,
    SessionLimitReached: "session limit reached",
    Unavailable: "no REPL available",
}
MAX_TACTICS_PER_BODY = 1024  # far above any server's --max-attempt-tactics; the server's own cap gives the message


class StartBody(StrictModel):
    """``POST /sessions``: one origin, and optionally the seconds reading its goals may take."""

    code: LeanText | None = None
    source: LeanText | None = None
    position: Position | None = None
    statement: LeanText | None = None
    header: LeanText = ""
    timeout: RequestTimeout | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> StartBody:
        require_together("source", self.source, "position", self.position)
        given = [name for name, value in (("code", self.code), ("source", self.source),
                                          ("statement", self.statement)) if value is not None]
        if len(given) != 1:
            raise ValueError("send exactly one origin: `code` (with `sorry`s), `source` + `position`, or "
                             f"`statement` (+ `header`); got {', '.join(given) or 'none'}")
        if self.header and self.statement is None:
            raise ValueError("`header` goes with `statement` (`code` and `source` carry their own imports)")
        return self

    def origin(self) -> Origin:
        if self.code is not None:
            return FromCode(self.code)
        if self.source is not None and self.position is not None:
            return FromPosition(self.source, self.position.line, self.position.column)
        assert self.statement is not None  # _one_origin
        return FromStatement(self.statement, self.header)


def _tactic_text(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    lean_text(value)
    return value


Tactic = Annotated[str, AfterValidator(_tactic_text)]


class TacticBody(StrictModel):
    """``POST /sessions/<id>/states/<state>/tactic``."""

    tactic: Tactic
    timeout: RequestTimeout | None = None


class AttemptBody(StrictModel):
    """``POST /sessions/<id>/states/<state>/attempt``: several tactics on one state, run in parallel."""

    tactics: list[Tactic] = Field(min_length=1, max_length=MAX_TACTICS_PER_BODY)
    timeout: RequestTimeout | None = None


def refusal(exc: SessionError | LimitError) -> tuple[str, str]:
    """The error name and detail of a refused session call (a timeout below the floor is a wrong field)."""
    if isinstance(exc, LimitError):
        return INVALID_REQUEST, f"timeout: {exc}"
    return REFUSALS.get(type(exc), INVALID_REQUEST), str(exc)


def state_json(state: StateView) -> dict[str, Any]:
    return {"id": state.id, "goals": list(state.goals), "status": state.status.value, "parent": state.parent,
            "tactic": state.tactic, "depth": state.depth}


def session_json(view: SessionView) -> dict[str, Any]:
    return {"id": view.id, "roots": list(view.roots), "states": [state_json(s) for s in view.states],
            "expires_in": round(view.expires_in, 3)}


def session_list_json(summaries: Sequence[SessionSummary]) -> dict[str, Any]:
    return {"sessions": [{"id": s.id, "roots": s.roots, "states": s.states, "proved": s.proved,
                          "expires_in": round(s.expires_in, 3)} for s in summaries]}


def step_json(result: StepResult) -> dict[str, Any]:
    out: dict[str, Any] = {"tactic": result.tactic, "status": result.status.value, "state": result.state,
                           "goals": list(result.goals),
                           "messages": [{"severity": m.severity, "data": m.data} for m in result.messages],
                           "time_ms": round(result.time * 1000, 3)}
    if result.message is not None:
        out["message"] = result.message
    return out


def proof_json(session: str, script: ProofScript) -> dict[str, Any]:
    return {"session": session, "state": script.state, "root": script.root, "tactics": list(script.tactics),
            "proof": script.text}


__all__ = ["REFUSALS", "AttemptBody", "StartBody", "Tactic", "TacticBody", "proof_json", "refusal", "session_json",
           "session_list_json", "state_json", "step_json"]
