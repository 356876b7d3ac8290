"""HTTP routes of the verification path: Kimina's ``POST /verify`` and ``POST /api/check``.

Both routes hold every request to the server's limits: the client's ``timeout``
is capped at ``--timeout`` and refused (422) below ``--min-timeout``, more
distinct headers than ``--max-headers-per-request`` are refused (422), more
snippets than ``--max-batch`` get 413, and each answer's ``limits`` says which
timeout applied and why (``leanstep.limits``). Once the server is shutting down
they answer 503. Problems with one snippet become that snippet's result.

Each request is checked at its ``trust`` (or ``strict``) level, else the
server's ``--trust``, and answered in its ``wire`` shape, else the server's
``--wire`` (``leanstep.api.kimina``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response

from leanstep.api.common import INVALID_REQUEST
from leanstep.api.kimina import CHECK_DEFAULT_TIMEOUT_S, WIRES, CheckBody, VerifyBody, Wire
from leanstep.check.verdict import Trust
from leanstep.check.verify import SHUTTING_DOWN, distinct_headers
from leanstep.limits import LimitError, TooManyHeaders, TooManySnippets
from leanstep.server.jsonio import error_response, json_response, parse_or_422, read_json_body

if TYPE_CHECKING:
    from leanstep.server.app import AppState


def verify_blueprint(state: AppState) -> Blueprint:
    """The batch routes, answered by ``state.services.verifier`` under ``state.services.config``'s limits."""
    bp = Blueprint("verify", __name__)
    config = state.services.config
    verifier = state.services.verifier
    limits = state.services.limits
    server_trust = Trust(config.trust)
    if config.wire not in WIRES:
        raise ValueError(f"--wire must be one of {', '.join(WIRES)}, got {config.wire!r}")
    server_wire: Wire = config.wire  # narrowed by the check above

    def read_json(list_field: str) -> tuple[Any, Response | None]:
        """The body (see ``read_json_body``), or 413 when ``list_field`` holds more than ``max_batch`` entries."""
        payload, problem = read_json_body()
        if problem is not None:
            return None, problem
        if isinstance(payload, dict) and isinstance(payload.get(list_field), list):
            try:
                limits.check_batch(len(payload[list_field]), list_field)
            except TooManySnippets as exc:
                return None, error_response(413, "too many snippets", str(exc))
        return payload, None

    def run_batch(list_field: str, model: type[CheckBody | VerifyBody], default_timeout: float | None) -> Response:
        """Parse, hold to the server's limits (``RequestLimits``), verify, answer: the batch routes differ only
        in their ``model``; the answer's ``limits`` says which timeout applied and why, and the import timeout."""
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        payload, problem = read_json(list_field)
        if problem is not None:
            return problem
        body, problem = parse_or_422(model, payload)
        if problem is not None:
            return problem
        snippets = body.to_snippets()
        try:
            timeout = limits.proof_timeout(body.timeout, default_timeout)
            limits.check_headers(len(distinct_headers(snippets)))
        except TooManyHeaders as exc:
            return error_response(422, "too many headers", str(exc))
        except LimitError as exc:
            return error_response(422, INVALID_REQUEST, str(exc))
        results = verifier.verify_batch(snippets, body.to_options(timeout, server_trust))
        return json_response(body.answer_json(results, timeout, limits.import_limit, server_wire=server_wire))

    @bp.post("/verify")
    @bp.post("/one_pass_verify_batch")
    def verify() -> Response:
        return run_batch("codes", VerifyBody, None)

    @bp.post("/api/check")
    @bp.post("/api/check/")
    def check() -> Response:
        return run_batch("snippets", CheckBody, CHECK_DEFAULT_TIMEOUT_S)

    return bp
