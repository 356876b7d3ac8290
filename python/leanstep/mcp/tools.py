"""The MCP tools: each one the translation of a service call the HTTP routes make too.

A tool parses its arguments with the API's strict models (``leanstep.api``),
holds them to the server's limits (``Services.limits``, the checker's budget),
calls the same service object as the HTTP route (the verifier, the suggester)
and answers structured content that its output schema describes, with the same
JSON as text beside it for clients that read only text. A refusal is a tool
error (``isError``) whose structured content is the HTTP error body
``{"error", "detail"}`` with the words the HTTP 4xx or 503 carries for the
same input: the messages come from the shared models and limits, not from here.

Annotations are honest hints. Every tool here runs Lean on the submitted code,
which is arbitrary code (``#eval`` does I/O), so none is read-only; what that
code can touch is the REPL sandbox's business: with bubblewrap it sees a
read-only file system and no network, so the tools are not destructive, and
under a weaker sandbox (``rlimit``, ``none``) they say they may be. Repeating a
call changes nothing more (idempotent); only ``suggest`` on an OpenAI-compatible
backend reaches outside the server (open world).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from leanstep.api.common import INVALID_REQUEST, SUGGESTION_FAILED, error_json, parse
from leanstep.api.mcp import (
    AttemptOutput,
    SuggestOutput,
    VerifyInput,
    VerifyOutput,
    attempt_output,
    output_json,
    suggest_output,
    verify_output,
)
from leanstep.api.suggest import AttemptBody, SuggestBody
from leanstep.check.verdict import Trust
from leanstep.limits import LimitError
from leanstep.repl.sandbox import SandboxError, SandboxPolicy
from leanstep.server.services import Services
from leanstep.suggest import SuggestionFailed

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
leanstep checks Lean 4 on a pool of warm Lean REPLs, in parallel.
- verify: check a whole Lean file (imports, then declarations) and get an honest verdict with reasons; pass \
`statement` to require that exactly that theorem is proved.
- multi_attempt: try several tactics at one goal (a file and the position of the goal in it) in one call; \
every tactic comes back closes_goal, valid (with the goals left), or invalid (with Lean's error).
- suggest: a language model's next tactics at a goal, checked the same way, goal-closing ones first.
Send file text, not paths: the server never reads your files. Positions are 1-based lines and 0-based columns."""


class ToolRefusal(Exception):
    """A call the server refuses; answered as a tool error with the HTTP error body ``{"error", "detail"}``."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Caller:
    """Who calls: ``owner`` is what the HTTP routes derive from the API key (the process, over stdio)."""

    owner: str


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its listing and what answers a call (blocking; run off the event loop)."""

    tool: types.Tool
    arguments: type[BaseModel]
    run: Callable[[Any, Caller], BaseModel]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def _output_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")


def code_is_contained(sandbox: str) -> bool:
    """Whether checked code runs with a read-only file system and no network (the ``bwrap`` sandbox)."""
    try:
        return SandboxPolicy(sandbox).resolved_mode() == "bwrap"
    except SandboxError:
        return False


class LeanTools:
    """The tools over ``services``: :meth:`listing` for ``tools/list``, :meth:`call` for ``tools/call``."""

    def __init__(self, services: Services) -> None:
        self.services = services
        config = services.config
        self._server_trust = Trust(config.trust)
        contained = code_is_contained(config.sandbox)
        runs_lean = {"read_only_hint": False, "destructive_hint": not contained, "idempotent_hint": True}
        where = ("in the REPL sandbox (read-only file system, no network)" if contained
                 else f"in the REPL sandbox ({config.sandbox!r}: it may write where the server's REPL user may)")
        specs = [ToolSpec(types.Tool(
            name="verify", title="Verify a Lean proof",
            description=("Check a complete Lean 4 file (imports, then declarations) and answer its verdict: valid, "
                         "invalid, timeout or error, with reasons (stable codes), Lean's messages and the axioms "
                         "used. `trust` picks the checks; `statement` makes the proof count only if it proves "
                         f"exactly that statement. Runs the code {where}."),
            input_schema=_schema(VerifyInput), output_schema=_output_schema(VerifyOutput),
            annotations=types.ToolAnnotations(title="Verify a Lean proof", open_world_hint=False, **runs_lean)),
            VerifyInput, self._verify)]
        if services.suggester is not None:
            open_world = config.backend == "openai"
            specs.append(ToolSpec(types.Tool(
                name="multi_attempt", title="Try several tactics at a goal",
                description=("Run each tactic on the goal at a position of a Lean file (`source` + `position`, or "
                             "`context`: the text up to the goal), in parallel on warm REPLs, and answer every "
                             "tactic's status in the order given: closes_goal, valid (goals left), invalid (Lean's "
                             "error) or unchecked (the budget ended first). No model is involved. Runs the code "
                             f"{where}."),
                input_schema=_schema(AttemptBody), output_schema=_output_schema(AttemptOutput),
                annotations=types.ToolAnnotations(title="Try several tactics at a goal", open_world_hint=False,
                                                  **runs_lean)),
                AttemptBody, self._attempt))
            specs.append(ToolSpec(types.Tool(
                name="suggest", title="Suggest next tactics",
                description=("Ask the server's language model for next tactics at a goal and check each one there, "
                             "as `multi_attempt` does: goal-closing ones first, then those that make progress. Give "
                             "the goal as `source` + `position` (or `context`); `tactic_state` alone gives unchecked "
                             f"suggestions. Runs the code {where}."),
                input_schema=_schema(SuggestBody), output_schema=_output_schema(SuggestOutput),
                annotations=types.ToolAnnotations(title="Suggest next tactics", open_world_hint=open_world,
                                                  **runs_lean)),
                SuggestBody, self._suggest))
        self._specs = {spec.tool.name: spec for spec in specs}

    def listing(self) -> list[types.Tool]:
        return [spec.tool for spec in self._specs.values()]

    def names(self) -> list[str]:
        return list(self._specs)

    def call(self, name: str, arguments: dict[str, Any] | None, caller: Caller) -> types.CallToolResult:
        """The answer to one call of a listed tool (blocking); a refusal is a tool error, never an exception."""
        spec = self._specs[name]
        try:
            output = spec.run(_parsed(spec.arguments, arguments), caller)
        except ToolRefusal as refusal:
            body = error_json(refusal.error, refusal.detail)
            return types.CallToolResult(content=[types.TextContent(text=json.dumps(body, ensure_ascii=False))],
                                        structured_content=body, is_error=True)
        content = output_json(output)
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(content, ensure_ascii=False))],
                                    structured_content=content)

    # -- the tools ---------------------------------------------------------------

    def _verify(self, args: VerifyInput, _caller: Caller) -> VerifyOutput:
        limits = self.services.limits
        try:
            timeout = limits.proof_timeout(args.timeout)
        except LimitError as exc:
            raise ToolRefusal(INVALID_REQUEST, str(exc)) from None
        [result] = self.services.verifier.verify_batch([args.to_snippet()],
                                                       args.to_options(timeout, self._server_trust))
        return verify_output(result, timeout, limits.import_limit)

    def _attempt(self, args: AttemptBody, _caller: Caller) -> AttemptOutput:
        assert self.services.suggester is not None  # listed only with a suggester
        return attempt_output(self.services.suggester.attempt(args.to_request(), args.tactics))

    def _suggest(self, args: SuggestBody, _caller: Caller) -> SuggestOutput:
        assert self.services.suggester is not None  # listed only with a suggester
        try:
            result = self.services.suggester.suggest(args.to_request())
        except SuggestionFailed as exc:  # the HTTP route's 503, as a tool error
            log.exception("suggestion failed")
            raise ToolRefusal(SUGGESTION_FAILED, str(exc)) from None
        return suggest_output(result)


def _parsed(model: type[BaseModel], arguments: dict[str, Any] | None) -> Any:
    try:
        return parse(model, arguments if arguments is not None else {})
    except ValueError as exc:
        raise ToolRefusal(INVALID_REQUEST, str(exc)) from None
