"""What a proof is for, and how a proof becomes the Lean text that is checked and offered.

A :class:`Target` is either a theorem statement (``header`` + ``theorem foo ... :
type``; the answer is the full theorem) or a goal at a position in a file (a
``sorry`` or an ``llmqed`` call; the answer is the tactic script to put where
the call was). Both reduce to the same text: the declaration up to where the
proof starts (``prefix``), the proof, and what closes the declaration after it
(``suffix``: the brackets still open at the call). :meth:`Target.with_tactics`
places a search's tactics there, :meth:`Target.with_code` reads a model's
whole-proof answer into it.

A multi-line proof is placed at the call's column: its first line where the
call was, every other line indented to that column, so it stays one tactic
block. A call in term position (``:= sorry``) gets ``by`` and the tactics
indented under it.

The check of a placed proof is the verifier's, at ``strict`` with the
statement check. For a goal at a position it runs on the file up to the end of
that declaration, whose earlier parts are the user's: :meth:`Placed.concerns`
keeps only what the verdict says against the inserted proof (an error inside
the declaration, a ``sorry`` or forbidden token in the inserted text, an
axiom outside the allowlist in the declaration itself, a statement that
differs), so that an unfinished lemma elsewhere in the file does not hide a
correct proof here. The verifier audits axioms only when nothing else is
wrong; when the rest of the file keeps it from auditing and the file has
constructs the strict policy forbids (an ``axiom`` above all, which the proof
could use), the proof is not vouched for either. ``sorryAx`` from the user's
own ``sorry``s is excused (the proof may rest on the user's unfinished
lemmas: it is as finished as they are). The verdict itself is reported
unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import leanstep.check.verdict as codes
from leanstep.check.lexer import tokens
from leanstep.check.sessions import FromPosition
from leanstep.check.source import GoalContext, declarations, line_count, offset_of, split_source
from leanstep.check.statement import StatementError, declaration_head, parse_statement
from leanstep.check.verdict import Reason, Verdict
from leanstep.check.verify import ALLOWED_AXIOMS, VerifyResult
from leanstep.repl.protocol import Pos

STATEMENT_INDENT = 2
# How a proof's lines are laid out where it goes: ``block`` on new lines at ``column`` (after a statement's
# ``:= by``); ``inline`` from the call on, later lines at the call's column (a call on its own line);
# ``after_by`` one line stays after ``by``, several go on new lines one level under (``:= by sorry``);
# ``term`` ``by`` and the lines under it (``:= sorry``).
Layout = Literal["block", "inline", "after_by", "term"]
CHEATS = frozenset({"sorry", "admit", "sorryAx"})
_PROOF_TAIL = re.compile(r"\s*:=\s*(?:by\s*)?(?:sorry\s*)?$")
_COMMAND_START = re.compile(r"^\S", re.MULTILINE)


class TargetError(ValueError):
    """The statement or the position names nothing that can be proved; the message says why."""


def _without_header(code: str) -> str:
    """The model's code without its own import lines (the target's header is the one checked)."""
    split = split_source(code)
    return split.body if split.header else code


def _dedent(text: str) -> list[str]:
    """The lines of a tactic script, the first one as written, the others without their common indentation."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return []
    first, rest = lines[0].strip(), lines[1:]
    indents = [len(line) - len(line.lstrip()) for line in rest if line.strip()]
    cut = min(indents, default=0)
    return [first, *(line[cut:] if line.strip() else "" for line in rest)]


def _after(code: str, prefix: str) -> str | None:
    """The text of ``code`` after its first run that equals ``prefix`` up to whitespace, or None."""
    wanted = "".join(prefix.split())
    if not wanted:
        return code
    start = 0
    while True:
        start = code.find(wanted[0], start)
        if start < 0:
            return None
        i, j = start, 0
        while i < len(code) and j < len(wanted):
            if code[i].isspace():
                i += 1
            elif code[i] == wanted[j]:
                i += 1
                j += 1
            else:
                break
        if j == len(wanted):
            return code[i:]
        start += 1


def _declaration_rest(text: str) -> str:
    """``text`` up to the next command at column 0 (the rest of the declaration it continues)."""
    first_newline = text.find("\n")
    if first_newline < 0:
        return text
    found = _COMMAND_START.search(text, first_newline + 1)
    return text if found is None else text[:found.start()]


@dataclass(frozen=True)
class Placed:
    """A proof placed in its target: the snippet that is checked, and the text the answer offers."""

    target: Target
    code: str  # header, preamble and the declaration with the proof: what the verifier checks
    proof: str  # the text to put where the call was (position), or the full theorem (statement)
    inserted: str  # the proof's text as it sits in ``code``
    span: tuple[Pos, Pos]  # where ``inserted`` starts and ends in ``code`` (1-based lines, code-point columns)
    declaration_line: int  # the first line of the target's declaration in ``code``

    def concerns(self, result: VerifyResult, allowed_axioms: frozenset[str] = ALLOWED_AXIOMS) -> tuple[Reason, ...]:
        """What ``result`` holds against this proof (empty: it is proved); see the module docstring."""
        if result.verdict is Verdict.VALID:
            return ()
        if not self.target.at_position or result.verdict is not Verdict.INVALID:
            return result.reasons
        start, end = self.span

        def in_proof(pos: Pos | None) -> bool:
            return pos is not None and (start.line, start.column) <= (pos.line, pos.column) <= (end.line, end.column)

        found = [Reason(codes.LEAN_ERROR, m.data.splitlines()[0] if m.data else "(no text)", m.pos)
                 for m in result.messages if m.is_error and m.pos.line >= self.declaration_line]
        found += [Reason(codes.USES_SORRY, "the proof uses sorry", s.pos) for s in result.sorries if in_proof(s.pos)]
        cheats = [t.text for t in tokens(self.inserted) if t.text in CHEATS]
        if cheats:
            found.append(Reason(codes.USES_SORRY, f"the proof uses `{cheats[0]}`", start))
        found += [r for r in result.reasons
                  if (r.code.startswith(codes.FORBIDDEN_PREFIX) and in_proof(r.pos))
                  or r.code in (codes.STATEMENT_MISMATCH, codes.AUDIT_INCOMPLETE)]
        if result.axioms is None:  # the audit did not run: the file is rejected elsewhere
            forbidden = next((r for r in result.reasons if r.code.startswith(codes.FORBIDDEN_PREFIX)), None)
            if forbidden is not None:  # and what it is rejected for can bring in axioms the proof may use
                found.append(Reason(codes.AUDIT_INCOMPLETE, "the axiom audit did not run (the file is rejected "
                                    f"elsewhere: {forbidden.message}), so the proof's axioms cannot be vouched for"))
        name = self.target.name
        if name is not None and result.axioms is not None:
            user_sorries = any(not in_proof(s.pos) for s in result.sorries)
            allowed = allowed_axioms | ({"sorryAx"} if user_sorries else set())
            bad = sorted(set(result.axioms.get(name, [])) - allowed)
            if bad:
                found.append(Reason(codes.DISALLOWED_AXIOM, f"{name} depends on disallowed axioms: {', '.join(bad)}"))
        return tuple(found)


@dataclass(frozen=True)
class Target:
    """Where a proof goes (see the module docstring).

    ``prefix`` ends where the proof starts; ``column`` is where its lines
    start; ``statement`` is the head the statement check compares (None when
    the declaration is not a theorem, lemma or example); ``goal`` is the goal
    as Lean printed it, when known.
    """

    header: str
    preamble: str
    prefix: str
    suffix: str = ""
    statement: str | None = None
    column: int = STATEMENT_INDENT
    at_position: bool = False
    layout: Layout = "block"
    goal: str | None = None

    # -- building ---------------------------------------------------------

    @staticmethod
    def for_statement(header: str, statement: str) -> Target:
        """A theorem to prove whole: ``header`` (imports, then any ``open``/``set_option`` lines) and its
        statement, with or without ``:= by sorry``."""
        head = _PROOF_TAIL.sub("", statement.strip())
        try:
            parse_statement(head)
        except StatementError as exc:
            raise TargetError(f"statement: {exc}") from None
        split = split_source(header.rstrip("\n") + "\n")
        preamble = split.body.strip("\n")
        return Target(header=split.header, preamble=preamble + "\n\n" if preamble else "",
                      prefix=head + " := by", statement=head)

    @staticmethod
    def at(context: GoalContext, goal: str | None = None) -> Target:
        """The goal at a call, from its goal context (built without a heartbeat line)."""
        if context.heartbeats:
            raise ValueError("build the goal context without heartbeats: the target's code is checked as written")
        offset = offset_of(context.declaration, context.sorry_pos)
        if not context.declaration.startswith("sorry", offset):
            raise TargetError("the goal context has no `sorry` at the call")
        prefix, suffix = context.declaration[:offset], context.declaration[offset + len("sorry"):]
        line = prefix[prefix.rfind("\n") + 1:]
        under = len(line) - len(line.lstrip()) + STATEMENT_INDENT  # one level under the call's line
        layout: Layout = "inline"
        column = context.sorry_pos.column
        if prefix.rstrip().endswith(":="):
            layout, column = "term", under
        elif re.search(r"\bby[ \t]*$", line):
            layout, column = "after_by", under
        return Target(header=context.header, preamble=context.preamble + ("\n" if context.preamble else ""),
                      prefix=prefix, suffix=suffix, statement=declaration_head(prefix), column=column,
                      at_position=True, layout=layout, goal=goal)

    @property
    def checked_statement(self) -> str | None:
        """The statement the verifier's statement check compares: a statement target's. At a position the
        head is the user's own declaration, which the inserted proof cannot change, and the check would
        elaborate it alone on the header, without the file's definitions and ``open``s: it is not sent."""
        return None if self.at_position else self.statement

    @cached_property
    def name(self) -> str | None:
        """The declaration's full name (namespaces included), which the axiom audit reports the proof under;
        None for an ``example`` or a declaration that is not a theorem. Read once per rejected candidate, so
        the scan of the text before the call is done once."""
        if self.statement is None:
            return None
        found = declarations(self.preamble + self.prefix)
        return found[-1].name if found else None

    def origin(self) -> FromPosition:
        """Where a proof session starts for this target: the text up to where the proof goes."""
        text = self.header + ("\n\n" if self.header else "") + self.preamble + self.prefix
        text += "" if text.endswith((" ", "\n")) else " "  # the session puts its `sorry` right here
        return FromPosition(text, text.count("\n") + 1, len(text) - (text.rfind("\n") + 1))

    # -- placing proofs -----------------------------------------------------

    def place(self, script: str) -> str:
        """``script`` as the text that replaces the call (see :data:`Layout`)."""
        lines = _dedent(script)
        pad = " " * self.column
        block = "\n".join(pad + line if line else "" for line in lines)
        if self.layout == "term":
            return "by\n" + block
        if self.layout == "block" or (self.layout == "after_by" and len(lines) > 1):
            return "\n" + block
        if self.layout == "after_by":
            return lines[0] if lines else ""
        return "\n".join([lines[0], *(pad + line if line else "" for line in lines[1:])]) if lines else ""

    def with_tactics(self, tactics: list[str]) -> Placed:
        """The proof made of a search's tactics, one per line."""
        return self._placed("\n".join(tactics), None)

    def with_code(self, code: str) -> Placed | None:
        """A model's whole-proof answer placed here; None when it cannot be (it rewrote what precedes the call).

        The answer may be the whole theorem (its header is dropped, helper lemmas before the theorem
        are kept for a statement), the declaration continued past the call, or the tactics alone.
        """
        body = _without_header(code).strip("\n")
        if not self.at_position:
            short = parse_statement(self.statement).name if self.statement is not None else None
            if short is not None and re.search(rf"(?:theorem|lemma)\s+«?{re.escape(short)}»?(?![\w'.])", body):
                return self._placed("", body)
            rest = _after(body, self.prefix)
            return self._placed(_declaration_rest(rest) if rest is not None else body, None)
        rest = _after(body, self.prefix)
        if rest is not None:
            rest = _declaration_rest(rest).rstrip()
            closers = self.suffix.strip()
            if closers and rest.endswith(closers):
                rest = rest[:-len(closers)]
            return self._placed(rest, None)
        if re.search(r"^(?:theorem|lemma|example)\s", body, re.MULTILINE):
            return None
        return self._placed(body, None)

    def _placed(self, script: str, whole: str | None) -> Placed:
        before = self.header + ("\n\n" if self.header else "") + self.preamble
        first_line = line_count(before) + 1
        if whole is not None:  # a statement's answer that is a complete theorem (and its helper lemmas)
            code = before + whole + "\n"
            return Placed(self, code, whole, whole, (Pos(first_line, 0), Pos(line_count(code), 0)), first_line)
        inserted = self.place(script)
        head = before + self.prefix
        end_text = head + inserted
        span = (Pos(head.count("\n") + 1, len(head) - (head.rfind("\n") + 1)),
                Pos(end_text.count("\n") + 1, len(end_text) - (end_text.rfind("\n") + 1)))
        proof = inserted if self.at_position else self.prefix + inserted
        return Placed(self, end_text + self.suffix + "\n", proof, inserted, span, first_line)


def open_goals(code: str, theorem: str | None = None) -> list[Pos]:
    """Where ``code`` has a ``sorry`` (comments and strings aside), in order; only inside the declaration named
    ``theorem`` when given (its full name, or the name after its namespaces). :class:`TargetError` when ``code``
    declares no such theorem."""
    found = [Pos(t.line, t.column) for t in tokens(code) if t.kind == "ident" and t.text == "sorry"]
    if theorem is None:
        return found
    decls = declarations(code)
    for k, decl in enumerate(decls):
        if decl.name is not None and (decl.name == theorem or decl.name.endswith("." + theorem)):
            end = decls[k + 1].line if k + 1 < len(decls) else line_count(code) + 1
            return [p for p in found if decl.line <= p.line < end]
    raise TargetError(f"no declaration named {theorem!r}")


__all__ = ["CHEATS", "Layout", "Placed", "Target", "TargetError", "open_goals"]
