"""LeanCopilot's external model routes: ``POST /generate`` over the server's generator, ``POST /encode`` 501.

Point LeanCopilot's ``ExternalGenerator`` at the server's host and port and its
``suggest_tactics`` and ``search_proof`` use the configured model. Nothing is
checked here: LeanCopilot checks the tactics itself, in the editor. A client
that hangs up while its generation waits in a batch is dropped, as on
``/suggest`` (``server.generation``).
"""

from __future__ import annotations

from flask import Blueprint, Response

from leanstep.api.leancopilot import NO_ENCODER, GenerateBody, generate_answer_json
from leanstep.generate.base import Candidate
from leanstep.server.generation import Abandoned, generated_answer
from leanstep.server.jsonio import error_response
from leanstep.suggest import Suggester, SuggestRequest

GENERATION_FAILED = "generation failed"  # the model or its server failed (503)


def leancopilot_blueprint(suggester: Suggester) -> Blueprint:
    bp = Blueprint("leancopilot", __name__)

    def generate_for(body: GenerateBody, abandoned: Abandoned | None) -> list[Candidate]:
        goal = SuggestRequest(tactic_state=body.input, prefix=body.prefix or "", abandoned=abandoned)
        return suggester.generate(goal, body.input)

    @bp.post("/generate")
    def generate() -> Response:
        return generated_answer(GenerateBody, generate_for, GENERATION_FAILED, generate_answer_json)

    @bp.post("/encode")
    def encode() -> Response:
        return error_response(501, "not implemented", NO_ENCODER)

    return bp
