"""The Kimina Lean Server's wire format: ``POST /api/check`` and ``POST /verify``, both sides.

Requests take exactly Kimina's fields (names and defaults), validated with
strict types: ``"timeout": "30"`` is rejected with a message naming the field
instead of being guessed at. Ours beside them, on both routes: ``trust``
(``lenient | strict | sealed``; not sent: the server's ``--trust``), ``strict``
(an alias: ``true`` is ``"trust": "strict"``, ``false`` is ``lenient``; sent
with a ``trust`` it disagrees with, 422), ``wire`` (the answer's shape, below)
and, per snippet, ``statement`` (the formal statement the snippet must prove;
``formal_statement`` too, the name datasets use). For pass@k, snippets may name
their ``group`` (the problem they are samples of) and a request may ask for
``first_valid``: once one snippet of a group is valid, the group's later snippets
not yet started are not checked and come back ``skipped`` (reason ``group_solved``;
in Kimina's shape, an ``error`` saying so).

Answers come in one of two shapes, the request's ``wire`` or else the server's
``--wire``:

* ``leanstep``: Kimina's shapes (what the unmodified ``kimina-client`` parses)
  plus, per result, our ``verdict``, the ``trust`` it was checked at, its
  ``reasons`` (``{"code", "message"}`` objects), ``axioms`` when audited and
  ``cached``, and a top-level ``limits``; ``env`` is the REPL's own env id.
* ``kimina-exact``: what Kimina answers, key for key: none of our keys, and
  ``env`` numbered as Kimina's REPLs number it (:func:`kimina_env`).

With ``debug`` every ``/api/check`` result has a ``diagnostics`` object (the
REPL that produced the answer, also for a cached, timed-out or lost one, when
the checker recorded it). Our own client speaks ``/api/check`` through the same
models and shapes, so the two sides cannot drift apart.

``timeout`` is what the client asks for; the server's ``--timeout`` caps it
(see ``leanstep.limits``), so ``None`` here means "not sent": ``/verify`` then
runs under the server's limit (Kimina's default of 300 s would always exceed
it) and ``/api/check`` under Kimina's 30 s, capped likewise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal, cast

from pydantic import Field, field_validator, model_validator

from leanstep.api.common import StrictModel, applied_timeout_json, reasons_from_json, trust_from_json, verdict_json
from leanstep.check.source import split_source
from leanstep.check.verdict import Trust, Verdict
from leanstep.check.verify import Snippet, VerifyOptions, VerifyResult
from leanstep.limits import AppliedTimeout
from leanstep.repl.protocol import InfotreeKind, Message, Sorry

TrustName = Literal["lenient", "strict", "sealed"]
Wire = Literal["leanstep", "kimina-exact"]
LEANSTEP_WIRE: Wire = "leanstep"
KIMINA_EXACT: Wire = "kimina-exact"
WIRES: tuple[Wire, ...] = (LEANSTEP_WIRE, KIMINA_EXACT)
CHECK_DEFAULT_TIMEOUT_S = 30.0  # Kimina's default for /api/check


def positive_timeout(value: float | None) -> float | None:
    """A request's ``timeout`` field, refused unless a positive number of seconds (or not sent)."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return value


def _non_empty(items: list[Any]) -> list[Any]:
    """Both batch routes refuse an empty batch alike: it is a client bug, not a request to check nothing."""
    if not items:
        raise ValueError("must be non empty")
    return items


def _strict_trust(strict: bool) -> Trust:
    return Trust.STRICT if strict else Trust.LENIENT


def kimina_env(env: int | None, has_header: bool) -> int | None:
    """The ``env`` Kimina answers for a check whose REPL answered ``env``.

    Kimina's REPL (its ``server/repl.py`` and ``server/manager.py``) holds one header, which it
    runs as the process's first command when it is not blank; every snippet after it is one
    more command, and the Lean REPL numbers the envs its commands create 0, 1, 2, ... So the
    k-th snippet (from 0) a Kimina REPL checks answers ``k + 1`` with a header and ``k``
    without. Our workers always import the header first, an empty one too, so for a worker
    whose header env is 0 that ran one command per check, ``env`` is ``k + 1`` either way:
    Kimina's number is ``env`` with a header and ``env - 1`` without.
    """
    if env is None:
        return None
    return env if has_header else max(0, env - 1)


# --------------------------------------------------------------------------- #
# Requests


class Stated(StrictModel):
    """A snippet's optional statement, under our name or the datasets' (``formal_statement``); every door's
    verification request takes it so."""

    statement: str | None = Field(default=None, description="the formal statement the code must prove "
                                  "(`theorem name ... : type`); strict and sealed check that it is proved as stated")
    formal_statement: str | None = Field(default=None, description="the same as `statement` (the name datasets use)")

    @model_validator(mode="after")
    def _one_statement(self) -> Stated:
        if self.statement is not None and self.formal_statement is not None \
                and self.statement != self.formal_statement:
            raise ValueError("`statement` and `formal_statement` differ; send the statement under one of them")
        return self

    @property
    def stated(self) -> str | None:
        return self.statement if self.statement is not None else self.formal_statement


class _Grouped(Stated):
    """A snippet's optional statement and ``group``: the problem it is a sample of (for ``first_valid``)."""

    group: str | int | None = None

    @property
    def group_name(self) -> str | None:
        return None if self.group is None else str(self.group)


class _BatchOptions(StrictModel):
    """What both batch routes take beside Kimina's fields: the trust level, the answer's shape, first valid wins."""

    strict: bool | None = None  # an alias: true is trust "strict", false is "lenient"
    trust: TrustName | None = None  # not sent: the server's --trust
    wire: Wire | None = None  # not sent: the server's --wire
    first_valid: bool = False  # once a snippet of a group is valid, skip its later snippets not yet started

    @model_validator(mode="after")
    def _trust_agrees(self) -> _BatchOptions:
        if self.strict is not None and self.trust is not None and _strict_trust(self.strict).value != self.trust:
            raise ValueError(
                f"`strict` and `trust` disagree: `\"strict\": {json.dumps(self.strict)}` means "
                f"`\"trust\": {json.dumps(_strict_trust(self.strict).value)}`, but `trust` is "
                f"{json.dumps(self.trust)}; send only `trust`")
        return self

    def trust_level(self, server_trust: Trust) -> Trust:
        """The level to check at: the request's ``trust`` (or ``strict``), else the server's."""
        if self.trust is not None:
            return Trust(self.trust)
        if self.strict is not None:
            return _strict_trust(self.strict)
        return server_trust

    def answer_wire(self, server_wire: Wire) -> Wire:
        return self.wire if self.wire is not None else server_wire


class CheckSnippet(_Grouped):
    id: str
    code: str


class CheckBody(_BatchOptions):
    """``POST /api/check`` (Kimina's CheckRequest, plus our ``trust``/``strict``/``wire``)."""

    snippets: list[CheckSnippet]
    timeout: float | None = None  # not sent: CHECK_DEFAULT_TIMEOUT_S
    debug: bool = False
    reuse: bool = True
    infotree: InfotreeKind | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return positive_timeout(value)

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
        return [Snippet(s.id, s.code, s.stated, s.group_name) for s in self.snippets]

    def to_options(self, timeout: AppliedTimeout, server_trust: Trust) -> VerifyOptions:
        return VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(), infotree=self.infotree,
                             trust=self.trust_level(server_trust), use_cache=self.reuse, debug=self.debug,
                             first_valid=self.first_valid)

    def answer_json(self, results: Sequence[VerifyResult], timeout: AppliedTimeout, import_timeout: AppliedTimeout,
                    *, server_wire: Wire) -> dict[str, Any]:
        """Kimina's ``results`` (with ``diagnostics`` when ``debug``), in the request's or the server's wire."""
        exact = self.answer_wire(server_wire) == KIMINA_EXACT
        entries = [_check_result_json(r, self.debug, exact, _has_header(s.code))
                   for r, s in zip(results, self.snippets, strict=True)]
        return {"results": entries} if exact else {"results": entries, "limits": _limits_json(timeout, import_timeout)}


class VerifyCode(_Grouped):
    custom_id: str | int
    proof: str | None = None
    code: str | None = None

    @model_validator(mode="after")
    def _has_content(self) -> VerifyCode:
        if self.proof is None and self.code is None:
            raise ValueError(f"code {self.custom_id!r} has neither `proof` nor `code`")
        return self

    @property
    def text(self) -> str:
        return cast(str, self.proof if self.proof is not None else self.code)

    def to_snippet(self) -> Snippet:
        return Snippet(str(self.custom_id), self.text, self.stated, self.group_name)


class VerifyBody(_BatchOptions):
    """``POST /verify`` (Kimina's backward-compatible VerifyRequestBody, plus our ``trust``/``strict``/``wire``)."""

    codes: list[VerifyCode]
    timeout: float | None = None  # not sent: the server's limit
    infotree_type: InfotreeKind | None = None
    disable_cache: bool = False

    @field_validator("codes")
    @classmethod
    def _codes(cls, codes: list[VerifyCode]) -> list[VerifyCode]:
        return _non_empty(codes)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return positive_timeout(value)

    def to_snippets(self) -> list[Snippet]:
        return [c.to_snippet() for c in self.codes]

    def to_options(self, timeout: AppliedTimeout, server_trust: Trust) -> VerifyOptions:
        return VerifyOptions(timeout=timeout.seconds, timeout_origin=timeout.describe(), infotree=self.infotree_type,
                             trust=self.trust_level(server_trust), use_cache=not self.disable_cache,
                             first_valid=self.first_valid)

    def answer_json(self, results: Sequence[VerifyResult], timeout: AppliedTimeout, import_timeout: AppliedTimeout,
                    *, server_wire: Wire) -> dict[str, Any]:
        """Kimina's v1 ``results``, in the request's or the server's wire."""
        exact = self.answer_wire(server_wire) == KIMINA_EXACT
        entries = [_verify_result_json(r, exact, _has_header(c.text)) for r, c in zip(results, self.codes, strict=True)]
        return {"results": entries} if exact else {"results": entries, "limits": _limits_json(timeout, import_timeout)}


def check_request_json(snippets: Sequence[Snippet], *, timeout: float, trust: Trust | None, infotree: str | None,
                       reuse: bool, first_valid: bool = False) -> dict[str, Any]:
    """The body our client sends to ``/api/check``, validated by the server's own model before it leaves.

    It asks for the ``leanstep`` wire, so a server started with ``--wire kimina-exact`` still gives verdicts.
    """
    body = CheckBody(snippets=[CheckSnippet(id=s.id, code=s.code, statement=s.statement, group=s.group)
                               for s in snippets],
                     timeout=timeout, trust=None if trust is None else trust.value,
                     infotree=infotree, reuse=reuse, wire=LEANSTEP_WIRE,  # type: ignore[arg-type]
                     first_valid=first_valid)
    return body.model_dump(exclude_none=True)


# --------------------------------------------------------------------------- #
# Answers


def _has_header(code: str) -> bool:
    return bool(split_source(code).header.strip())


def _without_none(obj: dict[str, Any]) -> dict[str, Any]:
    """What Kimina's ``exclude_none`` dump leaves of a REPL message or sorry."""
    return {k: (_without_none(v) if isinstance(v, dict) else v) for k, v in obj.items() if v is not None}


def _response_json(result: VerifyResult, exact: bool, has_header: bool) -> dict[str, Any] | None:
    """The REPL-shaped ``response`` object (Kimina's), or None when no REPL answer exists."""
    if result.error is not None:
        return None
    if result.repl_message is not None:
        return {"message": result.repl_message}
    out: dict[str, Any] = {}
    if exact:
        env = kimina_env(result.env, has_header)
        if env is not None:
            out["env"] = env
    else:
        out["env"] = result.env if result.env is not None else 0
    if result.messages:
        messages = [m.to_json() for m in result.messages]
        out["messages"] = [_without_none(m) for m in messages] if exact else messages
    if result.sorries:  # Kimina's client types a sorry's pos/endPos as required; command-mode sorries have them
        sorries = [s.to_json() for s in result.sorries]
        out["sorries"] = [_without_none(s) for s in sorries] if exact else sorries
    if result.infotree is not None:
        out["infotree"] = result.infotree
    return out


def _extras(result: VerifyResult, out: dict[str, Any]) -> dict[str, Any]:
    """Our keys beside Kimina's (the ``leanstep`` wire)."""
    out.update(verdict_json(result.verdict, result.trust, result.reasons))
    if result.axioms is not None:
        out["axioms"] = result.axioms
    if result.cached:
        out["cached"] = True
    return out


def _check_result_json(result: VerifyResult, debug: bool, exact: bool, has_header: bool) -> dict[str, Any]:
    """One entry of ``/api/check``'s ``results``: Kimina's ReplResponse (exactly one of error/response).

    ``diagnostics``: with ``debug``, always (empty when the checker recorded none); without it, only
    where Kimina sends it too: in ``kimina-exact``, a timeout's REPL.
    """
    out: dict[str, Any] = {"id": result.id, "time": round(result.time, 6)}
    response = _response_json(result, exact, has_header)
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = response
    if debug:
        out["diagnostics"] = dict(result.diagnostics or {})
    elif exact and result.verdict == Verdict.TIMEOUT and result.diagnostics and "repl_uuid" in result.diagnostics:
        out["diagnostics"] = {"repl_uuid": result.diagnostics["repl_uuid"]}
    return out if exact else _extras(result, out)


def _verify_result_json(result: VerifyResult, exact: bool, has_header: bool) -> dict[str, Any]:
    """One entry of ``/verify``'s ``results``: Kimina's v1 shape with ``time`` inside ``response``."""
    out: dict[str, Any] = {"custom_id": result.id}
    response = _response_json(result, exact, has_header)
    if response is None:
        out["error"] = result.error or "no result"
    else:
        out["response"] = {**response, "time": round(result.time, 6)}
    return out if exact else _extras(result, out)


def _limits_json(timeout: AppliedTimeout, import_timeout: AppliedTimeout) -> dict[str, Any]:
    return {"timeout": applied_timeout_json(timeout), "import_timeout": applied_timeout_json(import_timeout)}


def _verdict(value: Any) -> Verdict:
    try:
        return Verdict(value)
    except ValueError:
        return Verdict.ERROR


def check_result_from_json(entry: dict[str, Any]) -> VerifyResult:
    """One ``/api/check`` result back into a :class:`VerifyResult` (our client reads answers with it).

    Lenient like Kimina's own client: a missing field takes its default, a missing or unknown verdict is
    ``error``; a reason or trust level this version cannot read is left out (``api.common``).
    """
    response = entry.get("response") or {}
    repl_message = response.get("message") if "message" in response and "env" not in response else None
    return VerifyResult(
        id=str(entry.get("id") or ""), verdict=_verdict(entry.get("verdict", Verdict.ERROR.value)),
        messages=tuple(Message.from_json(m) for m in response.get("messages") or ()),
        sorries=tuple(Sorry.from_json(s) for s in response.get("sorries") or ()),
        time=float(entry.get("time") or 0.0), error=entry.get("error"), repl_message=repl_message,
        env=response.get("env"), infotree=response.get("infotree"), axioms=entry.get("axioms"),
        reasons=reasons_from_json(entry.get("reasons") or ()), cached=bool(entry.get("cached", False)),
        diagnostics=entry.get("diagnostics"), trust=trust_from_json(entry.get("trust")),
    )


__all__ = [
    "CHECK_DEFAULT_TIMEOUT_S", "KIMINA_EXACT", "LEANSTEP_WIRE", "WIRES", "CheckBody", "CheckSnippet", "InfotreeKind",
    "Stated", "TrustName", "VerifyBody", "VerifyCode", "Wire", "check_request_json", "check_result_from_json",
    "kimina_env", "positive_timeout",
]
