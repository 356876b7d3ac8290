"""Typed requests and responses of the Lean REPL (leanprover-community/repl).

The REPL dies on a request it cannot decode and silently skips text that
starts with ``#`` or ``--``, so every request is validated here, before it is
sent: an invalid request raises :class:`ProtocolError` and never reaches a
process. Responses are decoded from the REPL's pretty-printed, multi-line JSON
into frozen dataclasses; ``to_json`` gives back a JSON value equal to what the
REPL printed, which the transcript replay (``python -m leanstep.repl.replay``)
checks on real Lean output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args

JsonObject = dict[str, Any]

# How much of Lean's info tree a command's answer carries (the REPL's ``infotree`` option).
InfotreeKind = Literal["full", "tactics", "original", "substantive"]
INFOTREE_KINDS: tuple[InfotreeKind, ...] = get_args(InfotreeKind)
SEVERITIES = ("info", "warning", "error", "trace")
COMPLETED = "Completed"
LEAN_ERROR_PREFIX = "Lean error:"  # starts the message of an ErrorResponse for a tactic that threw


class ProtocolError(ValueError):
    """A request that must not be sent, or a response that cannot be decoded."""


# --------------------------------------------------------------------------- #
# Field validation


def _nat(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{field} must be a non-negative integer, got {value!r}")
    return value


def _opt_nat(value: Any, field: str) -> int | None:
    return None if value is None else _nat(value, field)


def _opt_bool(value: Any, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(f"{field} must be a boolean, got {value!r}")
    return value


def _text(value: Any, field: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{field} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ProtocolError(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"{field} is not valid Unicode text ({exc.reason} at {exc.start})") from None
    if nonempty and not value.strip():
        raise ProtocolError(f"{field} must not be empty")
    return value


def _infotree(value: object) -> InfotreeKind | None:
    for kind in INFOTREE_KINDS:
        if value == kind:
            return kind
    if value is not None:
        raise ProtocolError(f"infotree must be one of {', '.join(INFOTREE_KINDS)}, got {value!r}")
    return None


def _drop_none(obj: JsonObject) -> JsonObject:
    return {k: v for k, v in obj.items() if v is not None}


# --------------------------------------------------------------------------- #
# Requests


def _check_elaboration_options(request: CommandRequest | FileRequest) -> None:
    _opt_nat(request.env, "env")
    _opt_bool(request.all_tactics, "allTactics")
    _opt_bool(request.root_goals, "rootGoals")
    _infotree(request.infotree)


def _elaboration_json(request: CommandRequest | FileRequest, source: JsonObject) -> JsonObject:
    return _drop_none({**source, "env": request.env, "allTactics": request.all_tactics,
                       "rootGoals": request.root_goals, "infotree": request.infotree})


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """Elaborate Lean text; without ``env`` its header is processed (imports)."""

    cmd: str
    env: int | None = None
    all_tactics: bool | None = None
    root_goals: bool | None = None
    infotree: str | None = None

    def __post_init__(self) -> None:
        _text(self.cmd, "cmd")
        _check_elaboration_options(self)

    def to_json(self) -> JsonObject:
        return _elaboration_json(self, {"cmd": self.cmd})


@dataclass(frozen=True, slots=True)
class FileRequest:
    """Elaborate a file read by the REPL, relative to its working directory (same options as a command)."""

    path: str
    env: int | None = None
    all_tactics: bool | None = None
    root_goals: bool | None = None
    infotree: str | None = None

    def __post_init__(self) -> None:
        _text(self.path, "path", nonempty=True)
        _check_elaboration_options(self)

    def to_json(self) -> JsonObject:
        return _elaboration_json(self, {"path": self.path})


@dataclass(frozen=True, slots=True)
class TacticRequest:
    """Run one tactic on a recorded proof state; the result is a new proof state."""

    tactic: str
    proof_state: int

    def __post_init__(self) -> None:
        _text(self.tactic, "tactic", nonempty=True)
        _nat(self.proof_state, "proofState")

    def to_json(self) -> JsonObject:
        return {"tactic": self.tactic, "proofState": self.proof_state}


@dataclass(frozen=True, slots=True)
class PickleEnvRequest:
    env: int
    pickle_to: str

    def __post_init__(self) -> None:
        _nat(self.env, "env")
        _text(self.pickle_to, "pickleTo", nonempty=True)

    def to_json(self) -> JsonObject:
        return {"pickleTo": self.pickle_to, "env": self.env}


@dataclass(frozen=True, slots=True)
class UnpickleEnvRequest:
    unpickle_env_from: str

    def __post_init__(self) -> None:
        _text(self.unpickle_env_from, "unpickleEnvFrom", nonempty=True)

    def to_json(self) -> JsonObject:
        return {"unpickleEnvFrom": self.unpickle_env_from}


@dataclass(frozen=True, slots=True)
class PickleProofStateRequest:
    proof_state: int
    pickle_to: str

    def __post_init__(self) -> None:
        _nat(self.proof_state, "proofState")
        _text(self.pickle_to, "pickleTo", nonempty=True)

    def to_json(self) -> JsonObject:
        return {"pickleTo": self.pickle_to, "proofState": self.proof_state}


@dataclass(frozen=True, slots=True)
class UnpickleProofStateRequest:
    unpickle_proof_state_from: str
    env: int | None = None

    def __post_init__(self) -> None:
        _text(self.unpickle_proof_state_from, "unpickleProofStateFrom", nonempty=True)
        _opt_nat(self.env, "env")

    def to_json(self) -> JsonObject:
        return _drop_none({"unpickleProofStateFrom": self.unpickle_proof_state_from, "env": self.env})


Request = (
    CommandRequest | FileRequest | TacticRequest | PickleEnvRequest | UnpickleEnvRequest
    | PickleProofStateRequest | UnpickleProofStateRequest
)


def encode_request(request: Request) -> bytes:
    """One line of JSON plus exactly one blank line, as the REPL reads it."""
    line = json.dumps(request.to_json(), ensure_ascii=False, separators=(", ", ": "))
    check_frame(line)
    return (line + "\n\n").encode("utf-8")


def check_frame(line: str) -> None:
    """Reject a raw request line the REPL would skip (no reply) or mis-join."""
    if not line.strip():
        raise ProtocolError("empty request: the REPL would die on a blank request")
    if line.startswith(("#", "--")):
        raise ProtocolError("request text starts with '#' or '--': the REPL skips it and never answers")
    if "\n" in line or "\r" in line:
        raise ProtocolError("raw line break in a request: the REPL joins lines and would corrupt it")


def decode_request(obj: Any) -> Request:
    """Decode a request the way the REPL does: the first shape that fits wins (protocol §3.1)."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"a request must be a JSON object, got {type(obj).__name__}")

    def has(*keys: str) -> bool:
        return all(obj.get(k) is not None for k in keys)

    if has("proofState", "tactic"):
        return TacticRequest(obj["tactic"], obj["proofState"])
    if has("env", "pickleTo"):
        return PickleEnvRequest(obj["env"], obj["pickleTo"])
    if has("unpickleEnvFrom"):
        return UnpickleEnvRequest(obj["unpickleEnvFrom"])
    if has("proofState", "pickleTo"):
        return PickleProofStateRequest(obj["proofState"], obj["pickleTo"])
    if has("unpickleProofStateFrom"):
        return UnpickleProofStateRequest(obj["unpickleProofStateFrom"], obj.get("env"))
    options = {"env": obj.get("env"), "all_tactics": obj.get("allTactics"), "root_goals": obj.get("rootGoals"),
               "infotree": obj.get("infotree")}
    if has("cmd"):
        return CommandRequest(obj["cmd"], **options)
    if has("path"):
        return FileRequest(obj["path"], **options)
    raise ProtocolError(f"not a REPL request (keys: {sorted(obj)})")


# --------------------------------------------------------------------------- #
# Responses


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int

    @classmethod
    def from_json(cls, obj: JsonObject) -> Pos:
        return cls(_nat(obj["line"], "line"), _nat(obj["column"], "column"))

    def to_json(self) -> JsonObject:
        return {"line": self.line, "column": self.column}


def _opt_pos(obj: JsonObject | None) -> Pos | None:
    return None if obj is None else Pos.from_json(obj)


def _pos_json(pos: Pos | None) -> JsonObject | None:
    return None if pos is None else pos.to_json()


@dataclass(frozen=True, slots=True)
class Message:
    """A Lean message; columns count code points, lines are relative to the submitted text."""

    severity: str
    pos: Pos
    end_pos: Pos | None
    data: str

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @classmethod
    def from_json(cls, obj: JsonObject) -> Message:
        severity = obj["severity"]
        if severity not in SEVERITIES:
            raise ProtocolError(f"unknown message severity {severity!r}")
        return cls(severity, Pos.from_json(obj["pos"]), _opt_pos(obj.get("endPos")), _text(obj["data"], "data"))

    def to_json(self) -> JsonObject:
        return {"severity": self.severity, "pos": self.pos.to_json(),
                "endPos": _pos_json(self.end_pos), "data": self.data}


@dataclass(frozen=True, slots=True)
class Sorry:
    """A `sorry` with its goal and the proof state recorded there (positions absent in tactic mode)."""

    goal: str
    proof_state: int | None
    pos: Pos | None = None
    end_pos: Pos | None = None

    @classmethod
    def from_json(cls, obj: JsonObject) -> Sorry:
        return cls(obj["goal"], _opt_nat(obj.get("proofState"), "proofState"),
                   _opt_pos(obj.get("pos")), _opt_pos(obj.get("endPos")))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"goal": self.goal, "proofState": self.proof_state}
        if self.pos is not None:
            out["pos"] = self.pos.to_json()
        if self.end_pos is not None:
            out["endPos"] = self.end_pos.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Tactic:
    """An `allTactics` entry; ``goals`` is one string (the goals before the tactic).

    ``used_constants`` is None from REPLs older than 2024-11 (tag v4.14.0), which do not report it.
    """

    tactic: str
    goals: str
    proof_state: int | None
    pos: Pos
    end_pos: Pos
    used_constants: tuple[str, ...] | None = ()

    @classmethod
    def from_json(cls, obj: JsonObject) -> Tactic:
        used = obj.get("usedConstants")
        return cls(obj["tactic"], obj["goals"], _opt_nat(obj.get("proofState"), "proofState"),
                   Pos.from_json(obj["pos"]), Pos.from_json(obj["endPos"]),
                   None if used is None else tuple(used))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"tactic": self.tactic, "goals": self.goals, "proofState": self.proof_state,
                           "pos": self.pos.to_json(), "endPos": self.end_pos.to_json()}
        if self.used_constants is not None:
            out["usedConstants"] = list(self.used_constants)
        return out


@dataclass(frozen=True, slots=True)
class InfoTree:
    """An info-tree node. ``node`` keeps the kind-specific object as the REPL sent it."""

    kind: str
    node: JsonObject | None
    children: tuple[InfoTree, ...] = ()

    @classmethod
    def from_json(cls, obj: JsonObject) -> InfoTree:
        node = obj.get("node")
        if node is not None and not isinstance(node, dict):
            raise ProtocolError("infotree node must be an object or null")
        return cls(obj["kind"], node, tuple(cls.from_json(c) for c in obj.get("children", ())))

    def to_json(self) -> JsonObject:
        return {"kind": self.kind, "node": self.node, "children": [c.to_json() for c in self.children]}


_Item = TypeVar("_Item", Message, Sorry, Tactic)


class _JsonItem(Protocol):
    def to_json(self) -> JsonObject: ...


def _items(obj: JsonObject, key: str, cls: type[_Item]) -> tuple[_Item, ...]:
    return tuple(cls.from_json(item) for item in obj.get(key) or ())


def _put_items(out: JsonObject, key: str, items: Iterable[_JsonItem]) -> None:
    listed = [item.to_json() for item in items]
    if listed:
        out[key] = listed


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """Answer to cmd, path and env pickling: a new env id (allocated even on errors)."""

    env: int
    messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    tactics: tuple[Tactic, ...] = ()
    infotree: tuple[InfoTree, ...] | None = None

    @property
    def errors(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.is_error)

    @classmethod
    def from_json(cls, obj: JsonObject) -> CommandResponse:
        tree = obj.get("infotree")
        return cls(_nat(obj["env"], "env"), _items(obj, "messages", Message), _items(obj, "sorries", Sorry),
                   _items(obj, "tactics", Tactic),
                   None if tree is None else tuple(InfoTree.from_json(t) for t in tree))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"env": self.env}
        _put_items(out, "messages", self.messages)
        _put_items(out, "sorries", self.sorries)
        _put_items(out, "tactics", self.tactics)
        if self.infotree is not None:
            out["infotree"] = [t.to_json() for t in self.infotree]
        return out


@dataclass(frozen=True, slots=True)
class TacticResponse:
    """Answer to a tactic step or proof-state (un)pickling: a new proof state id.

    Only ``proof_status == "Completed"`` means the goal is closed by a
    kernel-checked proof; ``goals == []`` alone does not (protocol §5.9).
    ``proof_status`` is None from REPLs older than 2025-04 (tag v4.19.0), which
    do not validate proofs in tactic mode and send no ``proofStatus``.
    """

    proof_state: int
    goals: tuple[str, ...]
    proof_status: str | None
    messages: tuple[Message, ...] = ()
    sorries: tuple[Sorry, ...] = ()
    traces: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        return self.proof_status == COMPLETED

    @property
    def errors(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.is_error)

    @classmethod
    def from_json(cls, obj: JsonObject) -> TacticResponse:
        status = obj.get("proofStatus")
        if status is not None and not isinstance(status, str):
            raise ProtocolError(f"proofStatus must be a string, got {status!r}")
        return cls(_nat(obj["proofState"], "proofState"), tuple(obj["goals"]), status,
                   _items(obj, "messages", Message), _items(obj, "sorries", Sorry), tuple(obj.get("traces") or ()))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"proofState": self.proof_state, "goals": list(self.goals)}
        _put_items(out, "messages", self.messages)
        _put_items(out, "sorries", self.sorries)
        if self.traces:
            out["traces"] = list(self.traces)
        if self.proof_status is not None:
            out["proofStatus"] = self.proof_status
        return out


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """``{"message": ...}``: unknown ids, a tactic that threw (``Lean error:``), an I/O error."""

    message: str

    @property
    def is_lean_error(self) -> bool:
        return self.message.startswith(LEAN_ERROR_PREFIX)

    def to_json(self) -> JsonObject:
        return {"message": self.message}


Response = CommandResponse | TacticResponse | ErrorResponse


def response_from_json(obj: Any) -> Response:
    if not isinstance(obj, dict):
        raise ProtocolError(f"a response must be a JSON object, got {type(obj).__name__}")
    try:
        # REPLs before v4.19.0 answer a tactic without `proofStatus`: `proofState` + `goals` and no `env`.
        if "proofStatus" in obj or ("proofState" in obj and "goals" in obj and "env" not in obj):
            return TacticResponse.from_json(obj)
        if "env" in obj:
            return CommandResponse.from_json(obj)
        if set(obj) == {"message"} and isinstance(obj["message"], str):
            return ErrorResponse(obj["message"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"malformed response field: {exc!r}") from None
    raise ProtocolError(f"not a REPL response (keys: {sorted(obj)})")


def decode_response(text: str | bytes) -> Response:
    """Decode one response as printed by the REPL (pretty-printed, any line length)."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        snippet = text[:120] if isinstance(text, str) else text[:120].decode("utf-8", "replace")
        raise ProtocolError(f"response is not JSON ({exc}): {snippet!r}") from None
    return response_from_json(obj)


def join_frame(lines: list[str]) -> str:
    """Join the lines of one request the way the REPL does: trailing whitespace cut, no separator."""
    return "".join(line.rstrip() for line in lines)


def split_frames(text: str) -> list[str]:
    """Split a transcript into blocks separated by blank lines, each joined as the REPL joins it."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(join_frame(current))
            current = []
    if current:
        blocks.append(join_frame(current))
    return blocks
