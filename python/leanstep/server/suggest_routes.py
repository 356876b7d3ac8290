"""HTTP routes of the suggestion path: ``POST /suggest`` and llmstep's ``POST /``.

Thin: decode and validate (``suggest_schemas``), call the :class:`Suggester`,
encode. Errors use the app's shape ``{"error", "detail"}`` with real status
codes: 400 for a body that is not JSON, 422 for a wrong field (the detail names
it), 503 when the model fails. Problems locating the goal are not errors: the
suggestions come back ``unchecked``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, request

from leanstep.check.tactics import INVALID
from leanstep.server.schemas import error_json
from leanstep.server.suggest_schemas import LlmstepBody, SuggestBody, parse
from leanstep.suggest import Suggester

log = logging.getLogger(__name__)


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8"), status=status,
                    mimetype="application/json")


def _error(status: int, error: str, detail: str) -> Response:
    return _json(error_json(error, detail), status)


def _payload() -> tuple[Any, Response | None]:
    data = request.get_data(cache=False)
    if not data.strip():
        return None, _error(400, "empty request body", "send a JSON object")
    try:
        return json.loads(data), None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, _error(400, "malformed JSON", str(exc))


def suggest_blueprint(suggester: Suggester) -> Blueprint:
    """Routes bound to one suggester (its model, pool and configuration)."""
    bp = Blueprint("suggest", __name__)

    def run(body):
        try:
            return suggester.suggest(body.to_request()), None
        except Exception as exc:  # the model or its server failed; the editor gets a clear 503
            log.exception("suggestion failed")
            return None, _error(503, "suggestion failed", f"{type(exc).__name__}: {exc}")

    @bp.post("/suggest")
    def suggest():
        payload, error = _payload()
        if error:
            return error
        try:
            body = parse(SuggestBody, payload)
        except ValueError as exc:
            return _error(422, "invalid request", str(exc))
        result, error = run(body)
        if error:
            return error
        return _json(result.to_json())

    @bp.post("/")
    def llmstep_compatible():
        """llmstep's server contract: ``{"suggestions": [str, ...]}``, best first, invalid ones left out."""
        payload, error = _payload()
        if error:
            return error
        try:
            body = parse(LlmstepBody, payload)
        except ValueError as exc:
            return _error(422, "invalid request", str(exc))
        result, error = run(body)
        if error:
            return error
        return _json({"suggestions": [s.text for s in result.suggestions if s.status != INVALID]})

    return bp
