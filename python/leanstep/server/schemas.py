"""Request models and response shapes of the verification routes (Kimina-compatible).

``POST /api/check`` and ``POST /verify`` take exactly the fields of the Kimina
Lean Server (names and defaults), validated with strict types: ``"timeout":
"30"`` is rejected with a message naming the field instead of being guessed at.
Unknown fields are ignored, as Kimina does. Responses have Kimina's shapes
(what ``kimina-client`` parses) plus our ``verdict`` (and ``reasons``, and
``axioms`` in strict mode) per result.

``timeout`` is what the client asks for; the server's ``--timeout`` caps it
(see ``leanstep.limits``), so ``None`` here means "not sent": ``/verify`` then
runs under the server's limit (Kimina's default of 300 s would always exceed
it) and ``/api/check`` under Kimina's 30 s, capped likewise.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from leanstep.check.verify import VerifyResult

InfotreeKind = Literal["full", "tactics", "original", "substantive"]
CHECK_DEFAULT_TIMEOUT_S = 30.0  # Kimina's default for /api/check


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


def _check_timeout(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return value


def _non_empty(items: list[Any]) -> list[Any]:
    """Both batch routes refuse an empty batch alike: it is a client bug, not a request to check nothing."""
    if not items:
        raise ValueError("must be non empty")
    return items


class CheckSnippet(_Strict):
    id: str
    code: str


class CheckBody(_Strict):
    """``POST /api/check`` (Kimina's CheckRequest)."""

    snippets: list[CheckSnippet]
    timeout: float | None = None  # not sent: CHECK_DEFAULT_TIMEOUT_S
    debug: bool = False
    reuse: bool = True
    infotree: InfotreeKind | None = None
    strict: bool | None = None  # ours: audit axioms (default: the server's --strict)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return _check_timeout(value)

    @field_validator("snippets")
    @classmethod
    def _snippets(cls, snippets: list[CheckSnippet]) -> list[CheckSnippet]:
        return _non_empty(snippets)

    @model_validator(mode="after")
    def _unique_ids(self) -> CheckBody:
        seen: set[str] = set()
        for snippet in self.snippets:
            if snippet.id in seen:
                raise ValueError(f"`snippets` must have unique ids; {snippet.id!r} appears more than once")
            seen.add(snippet.id)
        return self


class VerifyCode(_Strict):
    custom_id: str | int
    proof: str | None = None
    code: str | None = None

    @model_validator(mode="after")
    def _has_content(self) -> VerifyCode:
        if self.proof is None and self.code is None:
            raise ValueError(f"code {self.custom_id!r} has neither `proof` nor `code`")
        return self

    @property
    def content(self) -> str:
        return self.proof if self.proof is not None else self.code  # type: ignore[return-value]


class VerifyBody(_Strict):
    """``POST /verify`` (Kimina's backward-compatible VerifyRequestBody)."""

    codes: list[VerifyCode]
    timeout: float | None = None  # not sent: the server's limit
    infotree_type: InfotreeKind | None = None
    disable_cache: bool = False
    strict: bool | None = None

    @field_validator("codes")
    @classmethod
    def _codes(cls, codes: list[VerifyCode]) -> list[VerifyCode]:
        return _non_empty(codes)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return _check_timeout(value)


def describe_errors(exc: ValidationError) -> str:
    """One part per problem, each naming its field (``snippets.2.code: Input should be a valid string``)."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error.get("loc", ())) or "body"
        message = error.get("msg", "invalid")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error.get("type") == "missing":
            message = "field required"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse(model: type[BaseModel], payload: Any) -> Any:
    """Validate a decoded JSON payload; raises ``ValueError`` with a field-naming message."""
    if not isinstance(payload, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from None


# --------------------------------------------------------------------------- #
# Responses


def _extras(result: VerifyResult, out: dict[str, Any]) -> dict[str, Any]:
    out["verdict"] = result.verdict
    if result.reasons:
        out["reasons"] = list(result.reasons)
    if result.axioms is not None:
        out["axioms"] = result.axioms
    if result.cached:
        out["cached"] = True
    return out


def check_result_json(result: VerifyResult, debug: bool = False) -> dict[str, Any]:
    """One entry of ``/api/check``'s ``results``: Kimina's ReplResponse (exactly one of error/response)."""
    out: dict[str, Any] = {"id": result.id, "time": round(result.time, 6)}
    response = result.response_json()
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = response
    if debug and result.diagnostics:
        out["diagnostics"] = result.diagnostics
    return _extras(result, out)


def verify_result_json(result: VerifyResult) -> dict[str, Any]:
    """One entry of ``/verify``'s ``results``: Kimina's v1 shape with ``time`` inside ``response``."""
    out: dict[str, Any] = {"custom_id": result.id}
    response = result.response_json()
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = {**response, "time": round(result.time, 6)}
    return _extras(result, out)


def error_json(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail}
