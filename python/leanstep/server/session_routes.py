"""HTTP routes of the proof sessions (``check.sessions``): a thin REST layer, one resource per session.

``POST /sessions`` starts one (201), ``GET /sessions`` lists the key's open
ones; ``GET`` / ``DELETE /sessions/<id>`` read its tree or close it; ``POST
.../states/<n>/tactic`` runs one tactic on state ``n``, ``POST
.../states/<n>/attempt`` several at once; ``GET .../states/<n>/proof`` gives
the tactics from the root to a proved state.

Each request acts for the owner its API key stands for (``g.owner``, set by
the app). Refusals are the app's ``{"error", "detail"}``: 404 for a session
that is not this key's (never started, closed, expired, or another key's: the
same answer for each) or a state it does not have; 409 for a state cap reached,
a proof asked of a state that is not proved, or a state that cannot be rebuilt;
422 for a wrong body or origin; 429 for the cap on open sessions (server or
key); 503 when no REPL could read the goals. Steps answer 200 whatever Lean
says; a step that could not run is ``unchecked`` with the reason.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from leanstep.api.common import applied_timeout_json
from leanstep.api.sessions import (
    REFUSALS,
    AttemptBody,
    StartBody,
    TacticBody,
    proof_json,
    refusal,
    session_json,
    session_list_json,
    step_json,
)
from leanstep.check.sessions import (
    NotProved,
    SessionError,
    SessionLimitReached,
    SessionNotFound,
    SessionService,
    StateLimitReached,
    StateNotFound,
    StateUnreachable,
    Unavailable,
)
from leanstep.limits import LimitError
from leanstep.server.jsonio import error_response, json_response, read_body

STATUS: dict[str, int] = {  # the HTTP status of each refusal, by its error name (others are 422)
    REFUSALS[SessionNotFound]: 404,
    REFUSALS[StateNotFound]: 404,
    REFUSALS[StateLimitReached]: 409,
    REFUSALS[NotProved]: 409,
    REFUSALS[StateUnreachable]: 409,
    REFUSALS[SessionLimitReached]: 429,
    REFUSALS[Unavailable]: 503,
}
RETRY_AFTER_S = "5"


def session_blueprint(sessions: SessionService) -> Blueprint:
    """The ``/sessions`` routes over one session service."""
    bp = Blueprint("sessions", __name__)

    @bp.errorhandler(SessionError)
    @bp.errorhandler(LimitError)
    def _refused(exc: SessionError | LimitError) -> Response:
        error, detail = refusal(exc)
        status = STATUS.get(error, 422)
        response = error_response(status, error, detail)
        if status in (429, 503):
            response.headers["Retry-After"] = RETRY_AFTER_S
        return response

    def limits(timeout: float | None) -> dict[str, Any]:
        return {"session_timeout": applied_timeout_json(sessions.applied_timeout(timeout))}

    @bp.post("/sessions")
    def start() -> Response:
        body, error = read_body(StartBody)
        if error:
            return error
        view = sessions.start(body.origin(), g.owner, body.timeout)
        return json_response({**session_json(view), "limits": limits(body.timeout)}, 201)

    @bp.get("/sessions")
    def owned() -> Response:
        return json_response(session_list_json(sessions.owned(g.owner)))

    @bp.get("/sessions/<session_id>")
    def get(session_id: str) -> Response:
        return json_response(session_json(sessions.get(session_id, g.owner)))

    @bp.delete("/sessions/<session_id>")
    def close(session_id: str) -> Response:
        sessions.close(session_id, g.owner)
        return json_response({"id": session_id, "closed": True})

    @bp.post("/sessions/<session_id>/states/<int:state>/tactic")
    def tactic(session_id: str, state: int) -> Response:
        body, error = read_body(TacticBody)
        if error:
            return error
        result = sessions.step(session_id, state, body.tactic, g.owner, body.timeout)
        return json_response({**step_json(result), "limits": limits(body.timeout)})

    @bp.post("/sessions/<session_id>/states/<int:state>/attempt")
    def attempt(session_id: str, state: int) -> Response:
        body, error = read_body(AttemptBody)
        if error:
            return error
        results = sessions.attempt(session_id, state, body.tactics, g.owner, body.timeout)
        return json_response({"results": [step_json(r) for r in results], "limits": limits(body.timeout)})

    @bp.get("/sessions/<session_id>/states/<int:state>/proof")
    def proof(session_id: str, state: int) -> Response:
        return json_response(proof_json(session_id, sessions.proof(session_id, state, g.owner)))

    return bp
