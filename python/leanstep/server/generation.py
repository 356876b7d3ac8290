"""What the routes that run the model share: generation is told when the client hangs up, and a 503 says why
there is no answer.

waitress reads on while a request runs (``server.wsgi``), so it notices a client
that hung up and the WSGI environ's ``waitress.client_disconnected`` turns true;
a batched generation (``generate.batching``) then drops the request before its
batch starts, so an editor that moved on costs no generation. ``/suggest``,
llmstep's ``/`` and LeanCopilot's ``/generate`` all answer through
:func:`generated_answer`, which runs their model call through :func:`generated`;
``/prove`` runs its proving through :func:`generated` too (it stops between its
steps once the client left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, request

from leanstep.api.common import CLIENT_LEFT
from leanstep.generate.batching import RequestAbandoned
from leanstep.server.jsonio import error_response, json_response, read_body
from leanstep.suggest import SuggestionFailed

log = logging.getLogger(__name__)

BodyT = TypeVar("BodyT")
ResultT = TypeVar("ResultT")
Abandoned = Callable[[], bool]


def generated(run: Callable[[Abandoned | None], ResultT], failure: str) -> ResultT | Response:
    """``run(abandoned)``, where ``abandoned`` says whether the current request's client hung up (None outside
    waitress); or, when there is no result, the 503 that says why: the client left, or the model failed (the
    error ``failure``, with the model's error as the detail)."""
    abandoned = request.environ.get("waitress.client_disconnected")
    try:
        return run(abandoned)
    except RequestAbandoned as exc:
        log.info("%s %s dropped: %s", request.method, request.path, exc)
        return error_response(503, CLIENT_LEFT, str(exc))
    except SuggestionFailed as exc:
        log.exception(failure)
        return error_response(503, failure, str(exc))


def generated_answer(model: type[BodyT], run: Callable[[BodyT, Abandoned | None], ResultT], failure: str,
                     encode: Callable[[ResultT], Any]) -> Response:
    """A route's answer: the request's body read as ``model`` (or the 4xx saying what is wrong with it), then
    ``run(body, abandoned)`` through :func:`generated` (or its 503), its result encoded as the JSON answer."""
    body, error = read_body(model)
    if error:
        return error
    result = generated(lambda abandoned: run(body, abandoned), failure)
    if isinstance(result, Response):
        return result
    return json_response(encode(result))
