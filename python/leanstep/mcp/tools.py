"""The MCP tools: each one the translation of a service call the HTTP routes make too.

A tool parses its arguments with the API's strict models (``leanstep.api``),
calls the same service object as the HTTP route (the verifier under
``Services.limits``, the suggester, the proof sessions, the prover) and answers
structured content that its output schema describes, with the same JSON as text
beside it for clients that read only text. A refusal is a tool error
(``isError``) whose structured content is the HTTP error body ``{"error",
"detail"}`` with the words the HTTP 4xx or 503 carries for the same input: the
messages come from the shared models, limits and services, not from here.

Proof sessions belong to the caller (``Caller.owner``: the API key over HTTP,
the same owner as on ``/sessions``; the process over stdio): another caller's
session is "not found", as on HTTP. ``prove`` needs no owner: its search runs
on sessions of the prover's own, as for ``POST /prove``; like that route's, its
proving stops at once when the SDK cancels the call (``Caller.abandoned``: a
client's ``notifications/cancelled`` over stdio).

Annotations are honest hints. Every tool but ``session_inspect``,
``session_list`` and ``session_proof`` runs Lean on the submitted code, which
is arbitrary code (``#eval`` does I/O), so none of those is read-only; what that code can touch is
the REPL sandbox's business: with bubblewrap it sees a read-only file system and
no network, so they are not destructive, and under a weaker sandbox (``rlimit``,
``none``) they say they may be. ``session_close`` destroys a session.
``session_start`` makes a new session at every call (not idempotent); repeating
any other call changes nothing more (``prove`` closes the sessions its search
opens before it answers). Only ``suggest`` and ``prove`` on an OpenAI-compatible
backend reach outside the server (open world).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel

from leanstep.api.common import CLIENT_LEFT, INVALID_REQUEST, SUGGESTION_FAILED, error_json, parse
from leanstep.api.mcp import (
    AttemptOutput,
    ClosedOutput,
    MultiAttemptInput,
    NoArguments,
    ProofOutput,
    ProveOutput,
    SessionListOutput,
    SessionOutput,
    SessionRef,
    SessionStepInput,
    StateRef,
    StepOutput,
    SuggestOutput,
    VerifyInput,
    VerifyOutput,
    file_attempt_output,
    output_json,
    proof_output,
    prove_output,
    session_attempt_output,
    session_list_output,
    session_output,
    step_output,
    suggest_output,
    verify_output,
)
from leanstep.api.prove import PROVE_REFUSALS, ProveBody, prove_refusal
from leanstep.api.sessions import StartBody, refusal
from leanstep.api.suggest import SuggestBody
from leanstep.check.sessions import SessionError
from leanstep.check.verdict import Trust
from leanstep.generate.batching import RequestAbandoned
from leanstep.limits import LimitError
from leanstep.repl.sandbox import SandboxError, SandboxPolicy
from leanstep.server.services import Services
from leanstep.suggest import Suggester, SuggestionFailed

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
leanstep checks Lean 4 on a pool of warm Lean REPLs, in parallel.
- verify: check a whole Lean file (imports, then declarations) and get an honest verdict with reasons; pass \
`statement` to require that exactly that theorem is proved.
- multi_attempt: try several tactics at one goal in one call (a file and the position of the goal in it, or a \
proof session's state); every tactic comes back closes_goal, valid (with the goals left) or invalid (with Lean's \
error).
- session_start / session_step / session_inspect / session_list / session_proof / session_close: a proof session \
is a tree of proof states; a tactic Lean accepts on a state makes a new state, so you can branch from any state you \
hold. Start from a file with `sorry`s, a position in a file, or a statement; session_list finds your open ones.
- suggest: a language model's next tactics at a goal, checked the same way, goal-closing ones first.
- prove: look for a whole proof of a theorem statement or of a goal in a file (search and/or whole proofs with \
repair); only a proof Lean accepted comes back.
Send file text, not paths: the server never reads your files. Positions are 1-based lines and 0-based columns."""


class ToolRefusal(Exception):
    """A call the server refuses; answered as a tool error with the HTTP error body ``{"error", "detail"}``."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Caller:
    """Who calls: ``owner`` is what the HTTP routes derive from the API key (the process, over stdio);
    ``abandoned`` turns true once the call is no longer waited for (the SDK cancelled it)."""

    owner: str
    abandoned: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its listing and what answers a call (blocking; run off the event loop)."""

    tool: types.Tool
    arguments: type[BaseModel]
    run: Callable[[Any, Caller], BaseModel]


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
        where = ("in the REPL sandbox (read-only file system, no network)" if contained
                 else f"in the REPL sandbox ({config.sandbox!r}: it may write where the server's REPL user may)")

        def runs_lean(title: str, *, idempotent: bool = True, open_world: bool = False) -> types.ToolAnnotations:
            return types.ToolAnnotations(title=title, read_only_hint=False, destructive_hint=not contained,
                                         idempotent_hint=idempotent, open_world_hint=open_world)

        def reads(title: str) -> types.ToolAnnotations:
            return types.ToolAnnotations(title=title, read_only_hint=True, destructive_hint=False,
                                         idempotent_hint=True, open_world_hint=False)

        def spec(name: str, title: str, description: str, arguments: type[BaseModel], output: type[BaseModel],
                 annotations: types.ToolAnnotations, run: Callable[[Any, Caller], BaseModel]) -> ToolSpec:
            return ToolSpec(types.Tool(name=name, title=title, description=description,
                                       input_schema=_schema(arguments, "validation"),
                                       output_schema=_schema(output, "serialization"),
                                       annotations=annotations), arguments, run)

        specs = [
            spec("verify", "Verify a Lean proof",
                 "Check a complete Lean 4 file (imports, then declarations) and answer its verdict: valid, invalid, "
                 "timeout or error, with reasons (stable codes), Lean's messages and the axioms used. `trust` picks "
                 "the checks; `statement` makes the proof count only if it proves exactly that statement. Runs the "
                 f"code {where}.",
                 VerifyInput, VerifyOutput, runs_lean("Verify a Lean proof"), self._verify),
            spec("multi_attempt", "Try several tactics at a goal",
                 "Run each tactic on one goal, in parallel on warm REPLs, and answer every tactic's status in the "
                 "order given: closes_goal, valid (goals left), invalid (Lean's error) or unchecked (the budget "
                 "ended first). The goal: a place in a Lean file (`source` + `position`, or `context`: the text up "
                 "to the goal), or a proof session's state (`session` + `state`; each accepted tactic then makes a "
                 f"new state to go on from). No model is involved. Runs the code {where}.",
                 MultiAttemptInput, AttemptOutput, runs_lean("Try several tactics at a goal"), self._attempt),
            spec("session_start", "Start a proof session",
                 "Start a proof session and answer its root states with their goals. From `code` (a Lean file: "
                 "each `sorry` is a goal), `source` + `position` (the goal at that place in a file) or `statement` "
                 "(a theorem statement, with `header` for its imports). Step it with `session_step` or "
                 "`multi_attempt`; it closes after --session-ttl seconds idle. Runs the code "
                 f"{where}.",
                 StartBody, SessionOutput, runs_lean("Start a proof session", idempotent=False), self._start),
            spec("session_step", "Run a tactic in a proof session",
                 "Run one tactic on a state of a session. A tactic Lean accepts makes a new state (a child of the "
                 "one it ran on; the state itself never changes), so branching is stepping from any state you "
                 f"hold; the same tactic on the same state answers the same child. Runs the code {where}.",
                 SessionStepInput, StepOutput, runs_lean("Run a tactic in a proof session"), self._step),
            spec("session_inspect", "Show a proof session",
                 "A session's tree: every state with its goals, status (open or proved), parent and tactic.",
                 SessionRef, SessionOutput, reads("Show a proof session"), self._inspect),
            spec("session_list", "List your proof sessions",
                 "Your open proof sessions, oldest first: each one's id, its numbers of root states, states and "
                 "proved states, and the seconds left before it closes idle. `session_inspect` gives one's tree.",
                 NoArguments, SessionListOutput, reads("List your proof sessions"), self._list),
            spec("session_proof", "Read a proof from a session",
                 "The tactics from a root to a proved state, one per line: the proof to put in place of the "
                 "root's `sorry`.",
                 StateRef, ProofOutput, reads("Read a proof from a session"), self._proof),
            spec("session_close", "Close a proof session",
                 "Close a session and forget its states (sessions also close after --session-ttl seconds idle).",
                 SessionRef, ClosedOutput,
                 types.ToolAnnotations(title="Close a proof session", read_only_hint=False, destructive_hint=True,
                                       idempotent_hint=True, open_world_hint=False), self._close),
        ]
        if services.suggester is not None:
            specs.append(spec(
                "suggest", "Suggest next tactics",
                "Ask the server's language model for next tactics at a goal and check each one there, as "
                "`multi_attempt` does: goal-closing ones first, then those that make progress. Give the goal as "
                "`source` + `position` (or `context`); `tactic_state` alone gives unchecked suggestions. Runs the "
                f"code {where}.",
                SuggestBody, SuggestOutput,
                runs_lean("Suggest next tactics", open_world=config.backend == "openai"), self._suggest))
        if services.prover is not None:
            specs.append(spec(
                "prove", "Prove a theorem or a goal",
                "Look for a proof of a theorem (`statement`, with `header` for its imports) or of the goal at a "
                "place in a file (`source` + `position`, or `context`): best-first search over the model's next "
                "tactics, whole proofs repaired with Lean's errors, or both (`strategy`), within `timeout`. A proof "
                "is returned only once Lean accepted it at `strict`: the full theorem, or the tactics to put at the "
                "place. The answer says which strategy found it, the expansions and samples it took and where the "
                "time went; not finding one is not an error (`proved` false, `stopped` says why). Runs the code "
                f"{where}.",
                ProveBody, ProveOutput,
                runs_lean("Prove a theorem or a goal", open_world=config.backend == "openai"), self._prove))
        self._specs = {s.tool.name: s for s in specs}

    def listing(self) -> list[types.Tool]:
        return [spec.tool for spec in self._specs.values()]

    def names(self) -> list[str]:
        return list(self._specs)

    def call(self, name: str, arguments: dict[str, Any] | None, caller: Caller) -> types.CallToolResult:
        """The answer to one call of a listed tool (blocking); a refusal is a tool error, never an exception."""
        spec = self._specs[name]
        try:
            output = spec.run(_parsed(spec.arguments, arguments), caller)
        except (SessionError, LimitError) as exc:  # the services' refusals, named as the HTTP routes name them
            return _tool_error(*refusal(exc))
        except ToolRefusal as exc:
            return _tool_error(exc.error, exc.detail)
        return _tool_result(output_json(output))

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

    def _attempt(self, args: MultiAttemptInput, caller: Caller) -> AttemptOutput:
        if args.session is not None and args.state is not None:
            sessions = self.services.sessions
            budget = sessions.applied_timeout(args.timeout)
            results = sessions.attempt(args.session, args.state, args.tactics, caller.owner, args.timeout)
            return session_attempt_output(results, budget)
        return file_attempt_output(self._suggester.attempt(args.to_request(), args.tactics))

    def _start(self, args: StartBody, caller: Caller) -> SessionOutput:
        sessions = self.services.sessions
        budget = sessions.applied_timeout(args.timeout)
        return session_output(sessions.start(args.origin(), caller.owner, args.timeout), budget)

    def _step(self, args: SessionStepInput, caller: Caller) -> StepOutput:
        sessions = self.services.sessions
        budget = sessions.applied_timeout(args.timeout)
        return step_output(sessions.step(args.session, args.state, args.tactic, caller.owner, args.timeout), budget)

    def _inspect(self, args: SessionRef, caller: Caller) -> SessionOutput:
        return session_output(self.services.sessions.get(args.session, caller.owner))

    def _list(self, _args: NoArguments, caller: Caller) -> SessionListOutput:
        return session_list_output(self.services.sessions.owned(caller.owner))

    def _proof(self, args: StateRef, caller: Caller) -> ProofOutput:
        return proof_output(args.session, self.services.sessions.proof(args.session, args.state, caller.owner))

    def _close(self, args: SessionRef, caller: Caller) -> ClosedOutput:
        self.services.sessions.close(args.session, caller.owner)
        return ClosedOutput(id=args.session, closed=True)

    def _suggest(self, args: SuggestBody, _caller: Caller) -> SuggestOutput:
        try:
            result = self._suggester.suggest(args.to_request())
        except SuggestionFailed as exc:  # the HTTP route's 503, as a tool error
            log.exception("suggestion failed")
            raise ToolRefusal(SUGGESTION_FAILED, str(exc)) from None
        return suggest_output(result)

    def _prove(self, args: ProveBody, caller: Caller) -> ProveOutput:
        assert self.services.prover is not None  # listed only with a prover
        try:
            return prove_output(self.services.prover.answer(replace(args.to_request(), abandoned=caller.abandoned)))
        except PROVE_REFUSALS as exc:  # the words and error names of POST /prove's 422 and 503
            raise ToolRefusal(*prove_refusal(exc)) from None
        except RequestAbandoned as exc:  # nobody reads it; the log says so, as POST /prove's does
            log.info("prove dropped: %s", exc)
            raise ToolRefusal(CLIENT_LEFT, str(exc)) from None

    @property
    def _suggester(self) -> Suggester:
        if self.services.suggester is None:
            raise ToolRefusal("not available", "this server checks tactics at a place in a file only with a "
                                               "suggester (leanstep serve and leanstep mcp build one)")
        return self.services.suggester


def _schema(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
    """``model``'s JSON schema, less its own title and docstring (the tool's title and description say it,
    and the models that HTTP shares describe their route)."""
    schema = model.model_json_schema(mode=mode)
    schema.pop("title", None)
    schema.pop("description", None)
    return schema


def _parsed(model: type[BaseModel], arguments: dict[str, Any] | None) -> Any:
    try:
        return parse(model, arguments if arguments is not None else {})
    except ValueError as exc:
        raise ToolRefusal(INVALID_REQUEST, str(exc)) from None


def _tool_error(error: str, detail: str) -> types.CallToolResult:
    return _tool_result(error_json(error, detail), is_error=True)


def _tool_result(body: dict[str, Any], *, is_error: bool = False) -> types.CallToolResult:
    """``body`` as structured content and, for clients that read only text, as its JSON."""
    return types.CallToolResult(content=[types.TextContent(text=json.dumps(body, ensure_ascii=False))],
                                structured_content=body, is_error=is_error)
