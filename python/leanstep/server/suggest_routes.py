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
from leanstep.server.generation import Abandoned, generated_answer
from leanstep.suggest import Suggester, SuggestResult


def suggest_blueprint(suggester: Suggester) -> Blueprint:
    """Routes bound to one suggester (its model, pool and configuration)."""
    bp = Blueprint("suggest", __name__)

    def suggest_for(body: SuggestBody | LlmstepBody, abandoned: Abandoned | None) -> SuggestResult:
        return suggester.suggest(replace(body.to_request(), abandoned=abandoned))

    @bp.post("/suggest")
    def suggest() -> Response:
        return generated_answer(SuggestBody, suggest_for, SUGGESTION_FAILED, suggest_answer_json)

    @bp.post("/")
    def llmstep_compatible() -> Response:
        """llmstep's server contract: ``{"suggestions": [str, ...]}``, best first, invalid ones left out."""
        return generated_answer(LlmstepBody, suggest_for, SUGGESTION_FAILED, llmstep_answer_json)

    return bp
