"""HTTP routes of the suggestion path: ``POST /suggest`` and llmstep's ``POST /``.

Thin: decode (``jsonio``, the reader every route shares), validate and
encode (``api.suggest``, ``api.llmstep``), call the :class:`Suggester`.
Errors use the app's shape ``{"error", "detail"}`` with real status codes: 415 for a body not sent as
``application/json``, 400 for one that is not JSON, 422 for a wrong field (the
detail names it), 503 when the model fails or the client hung up before its
generation ran (``server.generation``). Problems locating the goal are not
errors: the suggestions come back ``unchecked``.
"""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response

from leanstep.api.common import SUGGESTION_FAILED
from leanstep.api.llmstep import LlmstepBody, llmstep_answer_json
from leanstep.api.suggest import SuggestBody, suggest_answer_json
from leanstep.server.generation import generated
from leanstep.server.jsonio import json_response, read_body
from leanstep.suggest import Suggester, SuggestResult


def suggest_blueprint(suggester: Suggester) -> Blueprint:
    """Routes bound to one suggester (its model, pool and configuration)."""
    bp = Blueprint("suggest", __name__)

    def run(body: SuggestBody | LlmstepBody) -> SuggestResult | Response:
        return generated(lambda abandoned: suggester.suggest(replace(body.to_request(), abandoned=abandoned)),
                         SUGGESTION_FAILED)

    @bp.post("/suggest")
    def suggest() -> Response:
        body, error = read_body(SuggestBody)
        if error:
            return error
        result = run(body)
        if isinstance(result, Response):
            return result
        return json_response(suggest_answer_json(result))

    @bp.post("/")
    def llmstep_compatible() -> Response:
        """llmstep's server contract: ``{"suggestions": [str, ...]}``, best first, invalid ones left out."""
        body, error = read_body(LlmstepBody)
        if error:
            return error
        result = run(body)
        if isinstance(result, Response):
            return result
        return json_response(llmstep_answer_json(result))

    return bp
