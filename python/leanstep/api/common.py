"""What every peer's wire format shares: strict request models, field-naming errors, the error body, ``limits``.

Shared so that a wrong field gets the same 422 message, and a failure the same
``{"error", "detail"}`` body, on every route.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from leanstep.check.verdict import Reason, Trust, Verdict
from leanstep.limits import AppliedTimeout
from leanstep.repl.protocol import Pos

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 600.0

# A client's `timeout` on our own routes: seconds, finite, capped again by the server's own limit.
RequestTimeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)]


class StrictModel(BaseModel):
    """Strict types (``"timeout": "30"`` is refused, not guessed at); unknown fields are ignored, so newer
    clients that send more (a request id, a version) still work, as with Kimina."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Position(StrictModel):
    """A place in ``source``: 1-based line, 0-based column in Unicode code points."""

    line: int = Field(ge=1, description="1-based line in `source`")
    column: int = Field(ge=0, description="0-based column, in Unicode code points")


def lean_text(value: str | None) -> str | None:
    """``value`` if the REPL's protocol accepts it. It refuses NUL and lone surrogates; caught only
    there, they fail every checking lane and the editor gets unchecked suggestions, not a 422."""
    if value is None:
        return None
    nul = value.find("\x00")
    if nul >= 0:
        raise ValueError(f"contains a NUL character (at character {nul}), which Lean source cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode text ({exc.reason} at character {exc.start})") from None
    return value


# Text that goes to the REPL (a file, a goal, a statement): refused with a 422 naming the field when the REPL's
# protocol cannot carry it (``lean_text``).
LeanText = Annotated[str, AfterValidator(lean_text)]


def require_together(first: str, first_value: object, second: str, second_value: object) -> None:
    """A ValueError naming the missing field when one of two fields that only mean something together is sent
    without the other (``source`` and ``position``, ``session`` and ``state``)."""
    if (first_value is None) != (second_value is None):
        missing = first if first_value is None else second
        raise ValueError(f"`{first}` and `{second}` go together: `{missing}` is missing")


def describe_errors(exc: ValidationError) -> str:
    """One part per problem, each naming its field (``snippets.2.code: Input should be a valid string``)."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "field required"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse(model: type[BaseModel], payload: Any) -> Any:
    """Validate a decoded JSON payload; raises ``ValueError`` with a field-naming message."""
    if not isinstance(payload, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")  # noqa: TRY004
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None


INVALID_REQUEST = "invalid request"  # a field is wrong or a limit refuses it (HTTP 422)
SUGGESTION_FAILED = "suggestion failed"  # the model failed (HTTP 503)
CLIENT_LEFT = "client left"  # the answer to a request whose client hung up or cancelled it (nobody reads it)


def error_json(error: str, detail: Any = None) -> dict[str, Any]:
    """Every refusal's body, whichever layer refuses (a route, or the HTTP server before any route)."""
    return {"error": error, "detail": detail}


def applied_timeout_json(limit: AppliedTimeout) -> dict[str, Any]:
    """One entry of an answer's ``limits``: which limit applied and why, so a capped client can tell."""
    out: dict[str, Any] = {"seconds": limit.seconds, "requested": limit.requested, "source": limit.source,
                           "max": limit.ceiling}
    if limit.floor is not None:
        out["min"] = limit.floor
    return out


def reason_json(reason: Reason) -> dict[str, Any]:
    """A reason on every wire (our answers, our JSONL records): ``{"code", "message"}``, and the ``line`` and
    ``column`` in the snippet as it was sent when one place is to blame (``docs/verdicts.md``)."""
    out: dict[str, Any] = {"code": reason.code, "message": reason.message}
    if reason.pos is not None:
        out["line"], out["column"] = reason.pos.line, reason.pos.column
    return out


def verdict_json(verdict: Verdict, trust: Trust | None, reasons: Iterable[Reason]) -> dict[str, Any]:
    """Our verdict keys, the same in our answers and our JSONL records: ``verdict``, ``trust``, ``reasons``."""
    out: dict[str, Any] = {"verdict": str(verdict)}
    if trust is not None:
        out["trust"] = str(trust)
    listed = [reason_json(r) for r in reasons]
    if listed:
        out["reasons"] = listed
    return out


def reasons_from_json(items: Iterable[Any]) -> tuple[Reason, ...]:
    """Reasons read back from an answer or a record; one this version cannot read (a code a newer server
    added, a bare string from an older one) is left out and logged: the verdict beside it still holds."""
    return tuple(r for r in map(_reason_from_json, items) if r is not None)


def _reason_from_json(item: Any) -> Reason | None:
    try:
        line, column = item.get("line"), item.get("column")
        pos = Pos.from_json({"line": line, "column": column}) if line is not None and column is not None else None
        return Reason(item["code"], item["message"], pos)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring a reason this client cannot read (%s): %r", exc, item)
        return None


def trust_from_json(value: Any) -> Trust | None:
    """The ``trust`` an answer or a record names (None when it names none, or one this version does not know)."""
    try:
        return Trust(value) if value is not None else None
    except ValueError:
        log.warning("ignoring an unknown trust level %r", value)
        return None


__all__ = [
    "CLIENT_LEFT", "INVALID_REQUEST", "MAX_TIMEOUT_S", "SUGGESTION_FAILED", "LeanText", "Position", "RequestTimeout",
    "StrictModel",
    "applied_timeout_json", "describe_errors", "error_json", "lean_text", "parse", "reason_json",
    "reasons_from_json", "require_together", "trust_from_json", "verdict_json",
]
