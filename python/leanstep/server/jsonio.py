"""JSON in and out of every route: one request-body reader and one response writer.

The verification routes (``server.app``) and the suggestion routes
(``server.suggest_routes``) read bodies here, so a bad body gets the same 4xx
answer on each: 415 when it is not declared ``application/json`` (which is also
what a browser cannot send cross-site without a CORS preflight), 413 past the
size limit, 400 when the bytes are not strict JSON or hold an absurdly long
integer, and 422 naming each wrong field (``parse_or_422`` over the ``leanstep.api`` models).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from leanstep.api.common import INVALID_REQUEST, error_json, parse

MAX_INT_DIGITS = 100  # far beyond any id, count or timeout; keeps int() off a megabyte of digits
BODY_TOO_LARGE = "request body too large"


class _NotStrictJSON(ValueError):
    """A literal Python's parser accepts but the wire format does not (NaN, a 10,000-digit integer)."""


def _reject_constant(name: str) -> Any:
    raise _NotStrictJSON(f"{name} is not a JSON value")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _NotStrictJSON(f"an integer of {digits} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def json_response(obj: Any, status: int = 200) -> Response:
    try:
        data = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):  # lone surrogates echoed back from an id: escape them
        data = json.dumps(obj, ensure_ascii=True, default=str).encode("ascii")
    return Response(data, status=status, mimetype="application/json")


def error_response(status: int, error: str, detail: Any = None) -> Response:
    return json_response(error_json(error, detail), status)


def body_limit_bytes(max_body_mb: float) -> int:
    return int(max_body_mb * 2**20)


def body_too_large_detail(limit_bytes: int) -> str:
    """The 413 detail, the same whether the app or the HTTP server itself refused the body."""
    return (f"the body exceeds the limit of {limit_bytes} bytes (max_body_mb={limit_bytes / 2**20:g}); "
            "send fewer snippets per request")


def read_json_body() -> tuple[Any, Response | None]:
    """The decoded JSON body, or the 4xx response saying what is wrong with it."""
    if request.mimetype != "application/json":
        return None, error_response(
            415, "unsupported media type",
            f"send the body as JSON with `Content-Type: application/json` (got {request.content_type or 'none'!r})")
    data = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    if not data.strip():
        return None, error_response(400, "empty request body", "send a JSON object")
    try:
        return json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant, parse_int=_bounded_int), None
    except UnicodeDecodeError as exc:
        detail = f"the body is not UTF-8: {exc}"
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
    except _NotStrictJSON as exc:
        detail = str(exc)
    except RecursionError:
        detail = "nested too deeply"
    return None, error_response(400, "malformed JSON", detail)


def parse_or_422(model: type, payload: Any) -> tuple[Any, Response | None]:
    """``payload`` validated as ``model``, or a 422 whose detail names each wrong field."""
    try:
        return parse(model, payload), None
    except ValueError as exc:
        return None, error_response(422, INVALID_REQUEST, str(exc))


def read_body(model: type) -> tuple[Any, Response | None]:
    """The request's body validated as ``model`` (``read_json_body``, then ``parse_or_422``), or the 4xx."""
    payload, error = read_json_body()
    if error:
        return None, error
    return parse_or_422(model, payload)
