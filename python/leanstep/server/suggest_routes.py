"""HTTP routes of the suggestion path: ``POST /suggest`` and llmstep's ``POST /``.

Thin: decode (``jsonio``, the reader every route shares) and validate
(``suggest_schemas``), call the :class:`Suggester`, encode. Errors use the app's
shape ``{"error", "detail"}`` with real status codes: 415 for a body not sent as
``application/json``, 400 for one that is not JSON, 422 for a wrong field (the
detail names it), 503 when the model fails. Problems locating the goal are not
errors: the suggestions come back ``unchecked``.
"""

from __future__ import annotations

import logging

from flask import Blueprint

from leanstep.check.tactics import INVALID
from leanstep.server.jsonio import error_response, json_response, parse_or_422, read_json_body
from leanstep.server.suggest_schemas import LlmstepBody, SuggestBody
from leanstep.suggest import Suggester

log = logging.getLogger(__name__)


def suggest_blueprint(suggester: Suggester) -> Blueprint:
    """Routes bound to one suggester (its model, pool and configuration)."""
    bp = Blueprint("suggest", __name__)

    def run(body):
        try:
            return suggester.suggest(body.to_request()), None
        except Exception as exc:  # the model or its server failed; the editor gets a clear 503
            log.exception("suggestion failed")
            return None, error_response(503, "suggestion failed", f"{type(exc).__name__}: {exc}")

    @bp.post("/suggest")
    def suggest():
        payload, error = read_json_body()
        if error:
            return error
        body, error = parse_or_422(SuggestBody, payload)
        if error:
            return error
        result, error = run(body)
        if error:
            return error
        return json_response(result.to_json())

    @bp.post("/")
    def llmstep_compatible():
        """llmstep's server contract: ``{"suggestions": [str, ...]}``, best first, invalid ones left out."""
        payload, error = read_json_body()
        if error:
            return error
        body, error = parse_or_422(LlmstepBody, payload)
        if error:
            return error
        result, error = run(body)
        if error:
            return error
        return json_response({"suggestions": [s.text for s in result.suggestions if s.status != INVALID]})

    return bp
