"""What every peer's wire format shares: strict request models, field-naming errors, the error body, ``limits``.

Shared so that a wrong field gets the same 422 message, and a failure the same
``{"error", "detail"}`` body, on every route.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from leanstep.limits import AppliedTimeout


class StrictModel(BaseModel):
    """Strict types (``"timeout": "30"`` is refused, not guessed at); unknown fields are ignored, so newer
    clients that send more (a request id, a version) still work, as with Kimina."""

    model_config = ConfigDict(strict=True, extra="ignore")


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


__all__ = ["StrictModel", "applied_timeout_json", "describe_errors", "error_json", "lean_text", "parse"]
