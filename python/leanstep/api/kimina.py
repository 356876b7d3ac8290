"""The Kimina Lean Server's wire format: ``POST /api/check`` and ``POST /verify``, both sides.

Requests take exactly Kimina's fields (names and defaults), validated with
strict types: ``"timeout": "30"`` is rejected with a message naming the field
instead of being guessed at. Answers have Kimina's shapes (what the unmodified
``kimina-client`` parses) plus our ``verdict`` (and ``reasons``, ``axioms`` in
strict mode, ``cached``) per result, and a top-level ``limits``. Our own
client speaks ``/api/check`` through the same models and shapes, so the two
sides cannot drift apart.

``timeout`` is what the client asks for; the server's ``--timeout`` caps it
(see ``leanstep.limits``), so ``None`` here means "not sent": ``/verify`` then
runs under the server's limit (Kimina's default of 300 s would always exceed
it) and ``/api/check`` under Kimina's 30 s, capped likewise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import field_validator, model_validator

from leanstep.api.common import StrictModel, applied_timeout_json
from leanstep.check.verify import ERROR, Snippet, VerifyOptions, VerifyResult
from leanstep.limits import AppliedTimeout
from leanstep.repl.protocol import Message, Sorry

InfotreeKind = Literal["full", "tactics", "original", "substantive"]
CHECK_DEFAULT_TIMEOUT_S = 30.0  # Kimina's default for /api/check


def _check_timeout(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return value


def _non_empty(items: list[Any]) -> list[Any]:
    """Both batch routes refuse an empty batch alike: it is a client bug, not a request to check nothing."""
    if not items:
        raise ValueError("must be non empty")
    return items


def _options(timeout: AppliedTimeout, strict: bool | None, default_strict: bool, *, infotree: str | None,
             use_cache: bool, debug: bool = False) -> VerifyOptions:
    """How to check under the ``timeout`` the server applies; ``strict`` not sent means its ``--strict``."""
    return VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(), infotree=infotree,
                         strict=default_strict if strict is None else strict, use_cache=use_cache, debug=debug)


# --------------------------------------------------------------------------- #
# Requests


class CheckSnippet(StrictModel):
    id: str
    code: str


class CheckBody(StrictModel):
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

    def to_snippets(self) -> list[Snippet]:
        return [Snippet(s.id, s.code) for s in self.snippets]

    def to_options(self, timeout: AppliedTimeout, default_strict: bool) -> VerifyOptions:
        return _options(timeout, self.strict, default_strict, infotree=self.infotree, use_cache=self.reuse,
                        debug=self.debug)

    def answer_json(self, results: Sequence[VerifyResult], timeout: AppliedTimeout,
                    import_timeout: AppliedTimeout) -> dict[str, Any]:
        """The answer: Kimina's ``results`` (with diagnostics when ``debug``) plus our ``limits``."""
        return {"results": [_check_result_json(r, self.debug) for r in results],
                "limits": _limits_json(timeout, import_timeout)}


class VerifyCode(StrictModel):
    custom_id: str | int
    proof: str | None = None
    code: str | None = None

    @model_validator(mode="after")
    def _has_content(self) -> VerifyCode:
        if self.proof is None and self.code is None:
            raise ValueError(f"code {self.custom_id!r} has neither `proof` nor `code`")
        return self

    def to_snippet(self) -> Snippet:
        return Snippet(str(self.custom_id), self.proof if self.proof is not None else self.code)  # type: ignore[arg-type]


class VerifyBody(StrictModel):
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

    def to_snippets(self) -> list[Snippet]:
        return [c.to_snippet() for c in self.codes]

    def to_options(self, timeout: AppliedTimeout, default_strict: bool) -> VerifyOptions:
        return _options(timeout, self.strict, default_strict, infotree=self.infotree_type,
                        use_cache=not self.disable_cache)

    def answer_json(self, results: Sequence[VerifyResult], timeout: AppliedTimeout,
                    import_timeout: AppliedTimeout) -> dict[str, Any]:
        """The answer: Kimina's v1 ``results`` plus our ``limits``."""
        return {"results": [_verify_result_json(r) for r in results], "limits": _limits_json(timeout, import_timeout)}


def check_request_json(snippets: Sequence[Snippet], *, timeout: float, strict: bool | None, infotree: str | None,
                       reuse: bool) -> dict[str, Any]:
    """The body our client sends to ``/api/check``, validated by the server's own model before it leaves."""
    body = CheckBody(snippets=[CheckSnippet(id=s.id, code=s.code) for s in snippets], timeout=timeout,
                     strict=strict, infotree=infotree, reuse=reuse)  # type: ignore[arg-type]
    return body.model_dump(exclude_none=True)


# --------------------------------------------------------------------------- #
# Answers


def _response_json(result: VerifyResult) -> dict[str, Any] | None:
    """The REPL-shaped ``response`` object (Kimina's), or None when no REPL answer exists."""
    if result.error is not None:
        return None
    if result.repl_message is not None:
        return {"message": result.repl_message}
    out: dict[str, Any] = {"env": result.env if result.env is not None else 0}
    if result.messages:
        out["messages"] = [m.to_json() for m in result.messages]
    if result.sorries:  # Kimina's client types a sorry's pos/endPos as required; command-mode sorries have them
        out["sorries"] = [s.to_json() for s in result.sorries]
    if result.infotree is not None:
        out["infotree"] = result.infotree
    return out


def _extras(result: VerifyResult, out: dict[str, Any]) -> dict[str, Any]:
    out["verdict"] = result.verdict
    if result.reasons:
        out["reasons"] = list(result.reasons)
    if result.axioms is not None:
        out["axioms"] = result.axioms
    if result.cached:
        out["cached"] = True
    return out


def _check_result_json(result: VerifyResult, debug: bool) -> dict[str, Any]:
    """One entry of ``/api/check``'s ``results``: Kimina's ReplResponse (exactly one of error/response)."""
    out: dict[str, Any] = {"id": result.id, "time": round(result.time, 6)}
    response = _response_json(result)
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = response
    if debug and result.diagnostics:
        out["diagnostics"] = result.diagnostics
    return _extras(result, out)


def _verify_result_json(result: VerifyResult) -> dict[str, Any]:
    """One entry of ``/verify``'s ``results``: Kimina's v1 shape with ``time`` inside ``response``."""
    out: dict[str, Any] = {"custom_id": result.id}
    response = _response_json(result)
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = {**response, "time": round(result.time, 6)}
    return _extras(result, out)


def _limits_json(timeout: AppliedTimeout, import_timeout: AppliedTimeout) -> dict[str, Any]:
    return {"timeout": applied_timeout_json(timeout), "import_timeout": applied_timeout_json(import_timeout)}


def check_result_from_json(entry: dict[str, Any]) -> VerifyResult:
    """One ``/api/check`` result back into a :class:`VerifyResult` (our client reads answers with it).

    Lenient like Kimina's own client: a missing field takes its default, a missing verdict is ``error``.
    """
    response = entry.get("response") or {}
    repl_message = response.get("message") if "message" in response and "env" not in response else None
    return VerifyResult(
        id=str(entry.get("id") or ""), verdict=entry.get("verdict", ERROR),
        messages=tuple(Message.from_json(m) for m in response.get("messages") or ()),
        sorries=tuple(Sorry.from_json(s) for s in response.get("sorries") or ()),
        time=float(entry.get("time") or 0.0), error=entry.get("error"), repl_message=repl_message,
        env=response.get("env"), infotree=response.get("infotree"), axioms=entry.get("axioms"),
        reasons=tuple(entry.get("reasons") or ()), cached=bool(entry.get("cached", False)),
    )


__all__ = [
    "CHECK_DEFAULT_TIMEOUT_S", "CheckBody", "CheckSnippet", "InfotreeKind", "VerifyBody", "VerifyCode",
    "check_request_json", "check_result_from_json",
]
