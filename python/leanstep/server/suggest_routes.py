"""HTTP routes of the suggestion path: ``POST /suggest`` and llmstep's ``POST /``.

Thin: decode (``jsonio``, the reader every route shares), validate and
encode (``api.suggest``, ``api.llmstep``), call the :class:`Suggester`.
Errors use the app's shape ``{"error", "detail"}`` with real status codes: 415 for a body not sent as
``application/json``, 400 for one that is not JSON, 422 for a wrong field (the
detail names it), 503 when the model fails. Problems locating the goal are not
errors: the suggestions come back ``unchecked``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, request

from leanstep.api.common import SUGGESTION_FAILED
from leanstep.api.llmstep import LlmstepBody, llmstep_answer_json
from leanstep.api.suggest import SuggestBody, suggest_answer_json
from leanstep.generate.batching import RequestAbandoned
from leanstep.server.jsonio import error_response, json_response, read_body
from leanstep.suggest import Suggester, SuggestionFailed

log = logging.getLogger(__name__)


def suggest_blueprint(suggester: Suggester) -> Blueprint:
    """Routes bound to one suggester (its model, pool and configuration)."""
    bp = Blueprint("suggest", __name__)

    def run(body: SuggestBody | LlmstepBody) -> tuple[Any, Response | None]:
        # waitress tells whether the client hung up; a batched generation then drops the request
        suggestion = replace(body.to_request(), abandoned=request.environ.get("waitress.client_disconnected"))
        try:
            return suggester.suggest(suggestion), None
        except RequestAbandoned as exc:  # nobody reads this answer
            log.info("suggestion dropped: %s", exc)
            return None, error_response(503, "client left", str(exc))
        except SuggestionFailed as exc:  # the model or its server failed; the editor gets a clear 503
            log.exception("suggestion failed")
            return None, error_response(503, SUGGESTION_FAILED, str(exc))

    @bp.post("/suggest")
    def suggest() -> Response:
        body, error = read_body(SuggestBody)
        if error:
            return error
        result, error = run(body)
        if error:
            return error
        return json_response(suggest_answer_json(result))

    @bp.post("/")
    def llmstep_compatible() -> Response:
        """llmstep's server contract: ``{"suggestions": [str, ...]}``, best first, invalid ones left out."""
        body, error = read_body(LlmstepBody)
        if error:
            return error
        result, error = run(body)
        if error:
            return error
        return json_response(llmstep_answer_json(result))

    return bp
