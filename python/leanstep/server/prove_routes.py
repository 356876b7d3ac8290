"""HTTP route of proving: ``POST /prove`` (the wire shape is ``api.prove``'s).

Thin, like the suggestion routes: decode, validate, call the :class:`Prover`.
415/400 for a body that is not JSON, 422 for a wrong field, a target that
names no goal, or a timeout below ``--min-timeout``; 503 when the model fails
or the server is shutting down. A proof that is not found is not an error:
``proved`` is false and ``stopped`` says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Response

from leanstep.api.prove import ProveBody, prove_answer_json
from leanstep.check.verify import SHUTTING_DOWN
from leanstep.limits import LimitError
from leanstep.prove.target import TargetError
from leanstep.server.jsonio import error_response, json_response, read_body

if TYPE_CHECKING:
    from leanstep.prove.prover import Prover
    from leanstep.server.app import AppState

log = logging.getLogger(__name__)


def prove_blueprint(state: AppState, prover: Prover) -> Blueprint:
    bp = Blueprint("prove", __name__)

    @bp.post("/prove")
    def prove() -> Response:
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        body, error = read_body(ProveBody)
        if error:
            return error
        request = body.to_request()
        try:
            target = prover.target(request)
            prover.budget(request.timeout)
        except (TargetError, LimitError) as exc:
            return error_response(422, "invalid request", str(exc))
        try:
            result = prover.prove(request, target)
        except Exception as exc:  # the model or its server failed; a clear 503, as for /suggest
            log.exception("proving failed")
            return error_response(503, "proving failed", f"{type(exc).__name__}: {exc}")
        return json_response(prove_answer_json(result))

    return bp
