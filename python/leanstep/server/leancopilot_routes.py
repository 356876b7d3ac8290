"""LeanCopilot's external model routes: ``POST /generate`` over the server's generator, ``POST /encode`` 501.

Point LeanCopilot's ``ExternalGenerator`` at the server's host and port and its
``suggest_tactics`` and ``search_proof`` use the configured model. Nothing is
checked here: LeanCopilot checks the tactics itself, in the editor.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from leanstep.api.leancopilot import NO_ENCODER, GenerateBody, generate_answer_json
from leanstep.server.jsonio import error_response, json_response, read_body
from leanstep.suggest import Suggester, SuggestRequest

log = logging.getLogger(__name__)


def leancopilot_blueprint(suggester: Suggester) -> Blueprint:
    bp = Blueprint("leancopilot", __name__)

    @bp.post("/generate")
    def generate() -> Response:
        body, error = read_body(GenerateBody)
        if error:
            return error
        prefix = body.prefix or ""
        try:
            candidates = suggester.generate(SuggestRequest(tactic_state=body.input, prefix=prefix), body.input)
        except Exception as exc:  # the model or its server failed: a clear 503, as /suggest answers
            log.exception("generation failed")
            return error_response(503, "generation failed", f"{type(exc).__name__}: {exc}")
        return json_response(generate_answer_json(candidates))

    @bp.post("/encode")
    def encode() -> Response:
        return error_response(501, "not implemented", NO_ENCODER)

    return bp
