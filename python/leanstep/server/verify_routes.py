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

from leanstep.api.kimina import CHECK_DEFAULT_TIMEOUT_S, WIRES, CheckBody, VerifyBody, Wire
from leanstep.check.verdict import Trust
from leanstep.check.verify import SHUTTING_DOWN, distinct_headers
from leanstep.limits import LimitError, bounded_timeout
from leanstep.server.jsonio import error_response, json_response, parse_or_422, read_json_body

if TYPE_CHECKING:
    from leanstep.server.app import AppState


def verify_blueprint(state: AppState) -> Blueprint:
    """The batch routes, answered by ``state.services.verifier`` under ``state.services.config``'s limits."""
    bp = Blueprint("verify", __name__)
    config = state.services.config
    verifier = state.services.verifier
    import_limit = bounded_timeout(None, ceiling=config.import_timeout, ceiling_flag="--import-timeout")
    server_trust = Trust(config.trust)
    if config.wire not in WIRES:
        raise ValueError(f"--wire must be one of {', '.join(WIRES)}, got {config.wire!r}")
    server_wire: Wire = config.wire  # narrowed by the check above

    def read_json(list_field: str) -> tuple[Any, Response | None]:
        """The body (see ``read_json_body``), or 413 when ``list_field`` holds more than ``max_batch`` entries."""
        payload, problem = read_json_body()
        if problem is not None:
            return None, problem
        if isinstance(payload, dict) and isinstance(payload.get(list_field), list) \
                and len(payload[list_field]) > config.max_batch:
            return None, error_response(
                413, "too many snippets",
                f"{len(payload[list_field])} entries in `{list_field}`, the limit is {config.max_batch} "
                "(max_batch); split the work into smaller requests")
        return payload, None

    def run_batch(list_field: str, model: type[CheckBody | VerifyBody], default_timeout: float | None) -> Response:
        """Parse, hold to the server's limits, verify, answer: the batch routes differ only in their ``model``.

        The client's ``timeout`` is capped at ``--timeout`` (``default_timeout`` when it sent none) and
        refused below ``--min-timeout``; more distinct headers than ``--max-headers-per-request`` are
        refused. The answer's ``limits`` says which timeout applied and why, and the import timeout.
        """
        if state.closing:
            return error_response(503, SHUTTING_DOWN, "the server is stopping and takes no new work; retry later")
        payload, problem = read_json(list_field)
        if problem is not None:
            return problem
        body, problem = parse_or_422(model, payload)
        if problem is not None:
            return problem
        try:
            timeout = bounded_timeout(body.timeout, ceiling=config.timeout, ceiling_flag="--timeout",
                                      floor=config.min_timeout, default=default_timeout)
        except LimitError as exc:
            return error_response(422, "invalid request", f"timeout: {exc}")
        snippets = body.to_snippets()
        headers = distinct_headers(snippets)
        if len(headers) > config.max_headers_per_request:
            return error_response(
                422, "too many headers",
                f"the snippets import {len(headers)} distinct headers; the server allows "
                f"{config.max_headers_per_request} per request (--max-headers-per-request), as each one costs a "
                "REPL import: group the snippets by header and send the groups as separate requests")
        results = verifier.verify_batch(snippets, body.to_options(timeout, server_trust))
        return json_response(body.answer_json(results, timeout, import_limit, server_wire=server_wire))

    @bp.post("/verify")
    @bp.post("/one_pass_verify_batch")
    def verify() -> Response:
        return run_batch("codes", VerifyBody, None)

    @bp.post("/api/check")
    @bp.post("/api/check/")
    def check() -> Response:
        return run_batch("snippets", CheckBody, CHECK_DEFAULT_TIMEOUT_S)

    return bp
