"""The vocabulary of a verdict: what it can be, how much it trusts the submission, and why it is not ``valid``.

Pipelines filter on these, so they are stable: a ``Verdict`` and a ``Trust``
are their string values on the wire, and every :class:`Reason` carries a
``code`` from :data:`REASON_CODES` (or ``forbidden:<token>``, one per rule of
the source policy) beside a message for people. ``docs/verdicts.md`` lists them
all; a test keeps that page and this table in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from leanstep.repl.protocol import Pos


class TextEnum(str, Enum):
    """An enum whose members are their strings, in JSON and in f-strings alike."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Verdict(TextEnum):
    VALID = "valid"  # a proof at the requested trust level
    INVALID = "invalid"  # Lean, the policy or the audit rejected it (the reasons say why)
    ERROR = "error"  # no verdict could be reached (lost REPL, overload, bad input, shutdown)
    TIMEOUT = "timeout"  # the wall-clock limit was hit
    SKIPPED = "skipped"  # not checked: an earlier snippet of its group was valid (first valid wins), or deadline


class Trust(TextEnum):
    """How far a verdict trusts the submission (``docs/verdicts.md`` maps each to its checks)."""

    LENIENT = "lenient"  # no error, no sorry
    STRICT = "strict"  # + source policy, axiom allowlist, statement checked by Lean
    SEALED = "sealed"  # + kernel re-check of the compiled module outside the elaborator

    @property
    def rank(self) -> int:
        return list(Trust).index(self)


NOTHING_TO_CHECK = "nothing_to_check"
LEAN_ERROR = "lean_error"
HEADER_ERROR = "header_error"
USES_SORRY = "uses_sorry"
DISALLOWED_AXIOM = "disallowed_axiom"
IMPORT_NOT_ALLOWED = "import_not_allowed"
STATEMENT_MISMATCH = "statement_mismatch"
STATEMENT_UNREADABLE = "statement_unreadable"
AUDIT_INCOMPLETE = "audit_incomplete"
SEALED_UNAVAILABLE = "sealed_unavailable"
SEALED_REJECTED = "sealed_rejected"
TIMEOUT = "timeout"
HEADER_TIMEOUT = "header_timeout"
REPL_LOST = "repl_lost"
REPL_ERROR = "repl_error"
OVERLOADED = "overloaded"
RESTART_LIMITED = "restart_limited"
SHUTTING_DOWN = "shutting_down"
INVALID_SNIPPET = "invalid_snippet"
INTERNAL_ERROR = "internal_error"
CLUSTER_LOST = "cluster_lost"
GROUP_SOLVED = "group_solved"
DEADLINE = "deadline"
FORBIDDEN_PREFIX = "forbidden:"

REASON_CODES: dict[str, str] = {
    NOTHING_TO_CHECK: "the snippet declares nothing that could be a proof (empty, comments, imports only)",
    LEAN_ERROR: "Lean reported an error-severity message for the body",
    HEADER_ERROR: "Lean reported an error while importing the header",
    USES_SORRY: "the proof uses sorry (a reported sorry or the `declaration uses 'sorry'` warning)",
    DISALLOWED_AXIOM: "a declaration depends on an axiom outside the allowlist",
    IMPORT_NOT_ALLOWED: "the header imports a module outside the server's --allow-import list",
    STATEMENT_MISMATCH: "the submission does not prove the statement that was asked",
    STATEMENT_UNREADABLE: "the requested statement is not a single theorem, lemma or example signature",
    AUDIT_INCOMPLETE: "the axiom audit did not answer for every declaration",
    SEALED_UNAVAILABLE: "sealed checking was asked for but its tools are missing",
    SEALED_REJECTED: "the kernel re-check of the compiled module failed",
    TIMEOUT: "the proof hit its wall-clock limit",
    HEADER_TIMEOUT: "the header import hit its wall-clock limit",
    REPL_LOST: "the REPL process died while checking",
    REPL_ERROR: "the REPL refused the command",
    OVERLOADED: "no REPL was free within the server's queue wait",
    RESTART_LIMITED: "the server's REPL restart budget is spent",
    SHUTTING_DOWN: "the server is shutting down",
    INVALID_SNIPPET: "the snippet cannot be sent to Lean (not a string, NUL, lone surrogate)",
    INTERNAL_ERROR: "a bug in leanstep; the message has the exception",
    CLUSTER_LOST: "the cluster node checking it was lost (or none is alive) and the retries are spent",
    GROUP_SOLVED: "not checked: an earlier snippet of its group was valid and the request asked for first_valid",
    DEADLINE: "not checked: the deadline of its batch (a proving budget) came before its check could start",
    FORBIDDEN_PREFIX + "<token>": "the source policy forbids this construct (one code per rule)",
}


@dataclass(frozen=True)
class Reason:
    """Why a verdict is not ``valid``: a stable ``code`` to filter on, a ``message`` for people, and where.

    ``pos`` (1-based line, 0-based code-point column, in the user's own text) is set when one place is to
    blame: the token a policy rule forbids, the theorem whose statement differs.
    """

    code: str
    message: str
    pos: Pos | None = None

    def __post_init__(self) -> None:
        if self.code not in REASON_CODES and not self.code.startswith(FORBIDDEN_PREFIX):
            raise ValueError(f"unknown reason code {self.code!r}")

    def __str__(self) -> str:
        where = f" (line {self.pos.line}, column {self.pos.column})" if self.pos is not None else ""
        return f"{self.code}: {self.message}{where}"


__all__ = ["REASON_CODES", "Reason", "TextEnum", "Trust", "Verdict"]
