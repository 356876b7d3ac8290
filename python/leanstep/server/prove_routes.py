"""HTTP route of proving: ``POST /prove`` (the wire shape is ``api.prove``'s).

Thin, like the suggestion routes: decode, validate, call the :class:`Prover`.
415/400 for a body that is not JSON, 422 for a wrong field, a target that
names no goal, or a timeout below ``--min-timeout``; 503 when the model fails
or the server is shutting down, and when the client hung up: the proving is told
(``server.generation``) and stops at once, so nobody's proving holds REPLs or
the model. A proof that is not found is not an error: ``proved`` is false and
``stopped`` says why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from flask import Blueprint, Response

from leanstep.api.common import INVALID_REQUEST
from leanstep.api.prove import PROVE_REFUSALS, PROVING_FAILED, ProveBody, prove_answer_json, prove_refusal
from leanstep.check.verify import SHUTTING_DOWN
from leanstep.server.generation import generated
from leanstep.server.jsonio import error_response, json_response, read_body

if TYPE_CHECKING:
    from leanstep.prove.prover import Prover
    from leanstep.server.app import AppState

STATUS = {INVALID_REQUEST: 422, PROVING_FAILED: 503}  # the HTTP status of each refusal (api.prove.prove_refusal)


def prove_blueprint(state: AppState, prover: Prover) -> Blueprint:
    bp = Blueprint("prove", __name__)

    @bp.post("/prove")
    def prove() -> Response:
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        body, error = read_body(ProveBody)
        if error:
            return error
        try:
            result = generated(lambda abandoned: prover.answer(replace(body.to_request(), abandoned=abandoned)),
                               PROVING_FAILED)
        except PROVE_REFUSALS as exc:
            error_name, detail = prove_refusal(exc)
            return error_response(STATUS[error_name], error_name, detail)
        if isinstance(result, Response):
            return result
        return json_response(prove_answer_json(result))

    return bp
