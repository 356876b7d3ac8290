"""Split Lean source: header (imports) | body, the declarations in it, and the goal context at a call.

The header is what a REPL imports once and keeps warm; the body runs on top of
that env. The split is textual but follows Lean's header grammar: ``module``,
``prelude`` and ``[public] [meta] import [all] M`` commands, with blank lines and
comments (``--`` and nested ``/- -/``) among them. Doc comments (``/--``,
``/-!``) are commands, so they end the header.

Imports are never rewritten. The header sent to the REPL keeps only the lines
that hold header commands (comment-only and blank lines dropped, trailing
comments and whitespace cut), so headers that differ only by comments share a
warm worker; ``header_line_map`` maps its lines back to the user's lines.
The body always starts at a line boundary of the user's text, so body positions
become user positions by adding ``line_offset`` to the line (columns unchanged).

Goal context
    The editor sends either ``context`` (the file text up to the call, as
    llmstep does) or ``source`` + ``position`` (the whole file and the call's
    1-based line / 0-based code-point column). Both become a
    :class:`GoalContext`:

    * ``header``: the import lines as :func:`leanstep.check.source.split_source`
      normalises them (the same key ``/verify`` uses), so every file with the
      same imports shares warm REPLs;
    * ``preamble``: every command between the header and the current
      declaration (elaborated once per REPL and cached by content hash, see
      ``Worker.preamble``);
    * ``declaration``: the current declaration from its first line (doc comment
      and attributes included) up to the call, with the call replaced by
      ``sorry``; everything after the call is dropped and the brackets still
      open at the call are closed, so ``exact f (by llmstep "")`` becomes
      ``exact f (by sorry)``. It is sent as its own command on the preamble's
      env (a proof state made by a command sees the env from before that
      command, so lemmas of the preamble must live in an earlier command).
      The proof state of the ``sorry`` at the call's exact position (positions
      are relative to the submitted text) is the goal every candidate runs on.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass

from leanstep.check.lexer import (
    CLOSERS,
    OPENERS,
    Lexed,
    blank_quiet,
    block_comment_end,
    lex,
    line_starts,
    open_brackets,
)
from leanstep.repl.protocol import Pos

_HEADER_KEYWORD = re.compile(
    r"(?:module|prelude|(?:public[ \t]+)?(?:meta[ \t]+)?import(?:[ \t]+all)?|private[ \t]+import)(?![\w.'!?])"
)


@dataclass(frozen=True)
class SourceSplit:
    """A Lean file cut at the end of its header."""

    header: str  # header commands only, one per line ("" when there are none)
    body: str  # the user's text after the header, starting at a line boundary
    line_offset: int  # user line = body line + line_offset
    header_line_map: tuple[int, ...] = ()  # user line of each header line (1-based user lines)

    def user_header_line(self, line: int) -> int:
        """User line of a 1-based line of ``header``."""
        if 1 <= line <= len(self.header_line_map):
            return self.header_line_map[line - 1]
        return line


def _comment_end(text: str, i: int) -> int:
    end = block_comment_end(text, i)
    return len(text) if end < 0 else end


def _is_doc_comment(text: str, i: int) -> bool:
    return text.startswith("/--", i) or text.startswith("/-!", i)


def split_source(code: str) -> SourceSplit:
    """Cut ``code`` after its last header command (see the module docstring)."""
    n = len(code)
    i = 0
    header_end = 0  # index just after the newline that ends the last header line
    items: list[tuple[int, str]] = []  # (0-based user line, header line text)
    while True:
        # skip whitespace and plain comments
        while i < n:
            if code[i] in " \t\r\n":
                i += 1
            elif code.startswith("--", i):
                j = code.find("\n", i)
                i = n if j < 0 else j
            elif code.startswith("/-", i) and not _is_doc_comment(code, i):
                i = _comment_end(code, i)
            else:
                break
        if i >= n:
            break
        match = _HEADER_KEYWORD.match(code, i)
        if not match:
            break
        # the command runs to the end of its line (a comment there may span lines); the header
        # text keeps its code with comments blanked, so columns stay the user's
        line_start = code.rfind("\n", 0, i) + 1
        j = match.end()
        while j < n and code[j] != "\n":
            if code.startswith("--", j):
                k = code.find("\n", j)
                j = n if k < 0 else k
            elif code.startswith("/-", j):
                j = _comment_end(code, j)
            else:
                j += 1
        # a comment may open on an earlier line: blank from the top of the header, which is short
        items.append((code.count("\n", 0, line_start), blank_quiet(code[:j])[line_start:j]))
        i = j + 1 if j < n else n
        header_end = i
    if not items:
        return SourceSplit("", code, 0, ())
    body = code[header_end:]
    offset = code.count("\n", 0, header_end)
    if header_end == n and not code.endswith("\n"):
        offset = code.count("\n") + 1
    texts: list[str] = []
    line_map: list[int] = []
    for line_no, text in items:
        for k, piece in enumerate(text.split("\n")):
            texts.append(piece.rstrip())
            line_map.append(line_no + k + 1)
    return SourceSplit("\n".join(texts), body, offset, tuple(line_map))


# --------------------------------------------------------------------------- #
# Declarations


def blank_comments(code: str) -> str:
    """``code`` with comments and literals replaced by spaces (newlines kept), so regexes see only code."""
    return blank_quiet(code)


_IDENT = r"(?:«[^»]*»|[^\s:()\[\]{}⦃⦄,.«»@]+)(?:\.(?:«[^»]*»|[^\s:()\[\]{}⦃⦄,.«»@]+))*"
_MODIFIERS = r"(?:(?:private|protected|noncomputable|partial|unsafe|nonrec|scoped|local)\s+)*"
_DECL = re.compile(
    r"^[ \t]*(?:open\s[^\n]*?\bin\s+)?(?:@\[[^\]]*\]\s*)*" + _MODIFIERS
    + r"(?P<kind>theorem|lemma|def|abbrev|instance|opaque|axiom|example)\b"
    + r"(?P<rest>[^\n]*)",
    re.MULTILINE,
)
_SCOPE = re.compile(
    r"^[ \t]*(?:noncomputable\s+)?(?P<kw>namespace|section|mutual|end)\b[ \t]*(?P<name>" + _IDENT + r")?", re.MULTILINE)
_INSTANCE_PRIORITY = re.compile(r"^\s*\(\s*priority\s*:=[^)]*\)")
_NAME_AT = re.compile(r"\s*(?P<name>" + _IDENT + r")")


@dataclass(frozen=True)
class Declaration:
    """A declaration found in the text: its kind, fully qualified name (None for anonymous ones) and position."""

    kind: str  # theorem, lemma, def, abbrev, instance, opaque, axiom, example
    name: str | None
    line: int  # 1-based line of the keyword in the given text
    column: int  # column of the keyword (code points)
    namespace: str = ""  # the namespace open at the declaration ("" at the root)


def _qualify(namespaces: list[str], name: str) -> str:
    if name.startswith("_root_."):
        return name[len("_root_."):]
    return ".".join([*namespaces, name]) if namespaces else name


def declarations(code: str) -> list[Declaration]:
    """Declarations in ``code`` with their namespace-qualified names, in order.

    Textual, not a Lean parser: it sees declarations that start a line (after
    attributes, modifiers and ``open ... in``), and tracks ``namespace``/``section``/``end``.
    """
    text = blank_comments(code)
    events = [(m.start("kw"), "scope", m) for m in _SCOPE.finditer(text)]
    events += [(m.start("kind"), "decl", m) for m in _DECL.finditer(text)]
    events.sort(key=lambda e: e[0])
    scopes: list[tuple[str, str | None]] = []  # ("namespace", "A.B") or ("section", name)
    found: list[Declaration] = []
    for start, what, m in events:
        if what == "scope":
            kw, name = m.group("kw"), m.group("name")
            if kw in ("namespace", "section", "mutual"):
                scopes.append((kw, name))
            elif scopes:
                # `end X` closes the innermost scope (Lean checks the name; we trust the input)
                if name and scopes[-1][0] == "namespace" and scopes[-1][1] and "." in scopes[-1][1] \
                        and scopes[-1][1].endswith("." + name) and name != scopes[-1][1]:
                    ns = scopes[-1][1]
                    scopes[-1] = ("namespace", ns[: -len(name) - 1])
                else:
                    scopes.pop()
            continue
        kind, rest = m.group("kind"), m.group("rest")
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1)
        name = None
        current_ns = ".".join(ns for kw, ns in scopes if kw == "namespace" and ns)
        if kind != "example":
            if kind == "instance":
                pm = _INSTANCE_PRIORITY.match(rest)
                if pm:
                    rest = rest[pm.end():]
            nm = _NAME_AT.match(rest)
            if nm and not (kind == "instance" and rest.lstrip().startswith((":", "(", "[", "{", "⦃"))):
                raw = nm.group("name")
                if raw not in (":", "where", "extends"):
                    namespaces = [ns for kw, ns in scopes if kw == "namespace" and ns]
                    name = _qualify(namespaces, raw)
        found.append(Declaration(kind, name, line, column, current_ns))
    return found


def offset_of(text: str, pos: Pos) -> int:
    """The index in ``text`` of a 1-based line and code-point column (Lean's positions)."""
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[:pos.line - 1]) + pos.column


def line_count(text: str) -> int:
    """Number of lines ``text`` occupies (a trailing newline does not start a new one)."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


# --------------------------------------------------------------------------- #
# The goal context at an editor's call (what /suggest checks candidates against)

CALL_TOKEN = "llmstep"
# Column-0 words that continue the previous command instead of starting one.
CONTINUATION_WORDS = ("|", "where", "termination_by", "decreasing_by", "deriving", "with", ":=", "·", ".", "else",
                      "then", "<;>")
# Lines that belong to the declaration that follows them.
ATTACHED_PREFIXES = ("/--", "@[")



class ContextError(ValueError):
    """The goal at the call cannot be located; candidates are then answered ``unchecked``."""


# --------------------------------------------------------------------------- #
# Goal context


@dataclass(frozen=True)
class GoalContext:
    """What a REPL must elaborate to reach the goal at the call.

    ``sorry_pos`` is the position of the inserted ``sorry`` in :attr:`command`
    (the text actually sent), 1-based line and code-point column.
    """

    header: str
    preamble: str
    declaration: str
    sorry_pos: Pos
    heartbeats: int = 0

    @property
    def command(self) -> str:
        if self.heartbeats > 0:
            return f"set_option maxHeartbeats {self.heartbeats} in\n" + self.declaration
        return self.declaration

    @property
    def key(self) -> str:
        """Identifies the proof state this context produces on a given REPL (which may hold several headers,
        and a declaration several ``sorry``s)."""
        where = f"{self.sorry_pos.line}:{self.sorry_pos.column}"
        return hashlib.sha256(f"{self.header}\0{self.preamble}\0{self.command}\0{where}".encode()).hexdigest()


def _is_command_start(line: str) -> bool:
    """A column-0 line that begins a command (Lean style puts every command at column 0)."""
    if not line or line[0].isspace():
        return False
    if line.startswith("--"):
        return False
    if line.startswith("/-") and not line.startswith("/--"):
        return False
    if line[0] in CLOSERS or line[0] in "|·.,":
        return False
    first = line.split(None, 1)[0]
    return first not in CONTINUATION_WORDS


def _attaches_to_next(line: str) -> bool:
    """Doc comments, attributes and ``... in`` combinators belong to the command after them."""
    stripped = line.rstrip()
    return stripped.startswith(ATTACHED_PREFIXES) or stripped.endswith(" in")


def _split_header(text: str, window: int = 1 << 16) -> tuple[str, str]:
    """(header, body) by :func:`split_source`, run on the file's head only (the header is at the top)."""
    head = text[:window]
    split = split_source(head)
    if len(head) < len(text) and not split.body.strip():
        split = split_source(text)  # a header longer than the window: split the whole text
        return split.header, split.body
    return split.header, split.body + text[len(head):]


def _declaration_starts(body: str, lexed: Lexed) -> list[int]:
    """Offsets where the commands of ``body`` start, each with the doc comments and attributes before it.

    Command starts are column-0 lines outside comments and literals. Brackets are
    not trusted here, so one unbalanced bracket in the preamble cannot hide every
    later command.
    """
    starts: list[int] = []
    attached = False  # the previous command start belongs to the next one
    for off in line_starts(body):
        if lexed.is_quiet(off):
            continue
        line_end = body.find("\n", off)
        line = body[off: len(body) if line_end < 0 else line_end]
        if _is_command_start(line):
            if not attached:
                starts.append(off)
            attached = _attaches_to_next(line)
    return starts


def _goal_context(header: str, preamble: str, declaration: str, sorry_offset: int, heartbeats: int) -> GoalContext:
    """The goal of the ``sorry`` at ``sorry_offset`` in ``declaration``, which runs after ``preamble``."""
    preamble = preamble.strip()
    before = declaration[:sorry_offset]
    sorry_line = before.count("\n") + 1 + (1 if heartbeats > 0 else 0)  # + the set_option line
    sorry_column = sorry_offset - (before.rfind("\n") + 1)
    return GoalContext(header=header, preamble=preamble + "\n" if preamble else "", declaration=declaration,
                       sorry_pos=Pos(sorry_line, sorry_column), heartbeats=heartbeats)


def _build(before: str, heartbeats: int) -> GoalContext:
    """The goal context for a call that starts right after ``before``."""
    before = before.replace("\r\n", "\n")
    header, body = _split_header(before)
    lexed = lex(body)
    if lexed.open_at_end:
        raise ContextError(f"the call is inside a {lexed.open_at_end}")
    starts = _declaration_starts(body, lexed)
    if not starts or not body[starts[-1]:].strip():
        raise ContextError("no declaration found before the call")
    decl_prefix = body[starts[-1]:]
    closers = "".join(OPENERS[b] for b in reversed(open_brackets(lex(decl_prefix).tokens)))
    # The call replaced by `sorry`; the rest of the line and of the file is dropped.
    return _goal_context(header, body[:starts[-1]], decl_prefix + "sorry" + closers, len(decl_prefix), heartbeats)


_PROOF_START = re.compile(r"\s*:=\s*(?:by\s*)?$")


def goal_context_of_statement(statement: str, header: str = "", heartbeats: int = 0) -> GoalContext:
    """The goal of a theorem statement (``theorem name binders : type``) under ``header`` (import lines).

    A trailing ``:=`` or ``:= by`` is dropped; the proof is a ``sorry`` on a line of its own.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ContextError("no statement given")
    split = split_source(header.replace("\r\n", "\n"))
    if split.body.strip():
        raise ContextError(f"the header may hold only imports; it goes on with {split.body.strip()[:60]!r}")
    text = _PROOF_START.sub("", statement.replace("\r\n", "\n").rstrip())
    lexed = lex(text)
    if lexed.open_at_end:
        raise ContextError(f"the statement ends inside a {lexed.open_at_end}")
    if open_brackets(lexed.tokens):
        raise ContextError("the statement leaves a bracket open")
    declaration = f"{text} := by\n  sorry\n"
    return _goal_context(split.header, "", declaration, len(declaration) - len("sorry\n"), heartbeats)


def goal_contexts_at_sorries(code: str, heartbeats: int = 0) -> list[GoalContext]:
    """The goal of every ``sorry`` in ``code`` (a whole file), in order; :class:`ContextError` when there is none.

    Each runs as its declaration (up to the next command) after everything before it
    as the preamble, so a proof state sees the declarations above it, as in the file.
    ``sorry`` in comments and literals does not count.
    """
    if not isinstance(code, str) or not code.strip():
        raise ContextError("no code given")
    header, body = _split_header(code.replace("\r\n", "\n"))
    lexed = lex(body)
    sorries = [t.offset for t in lexed.tokens if t.kind == "ident" and t.text == "sorry" and not t.quoted]
    if not sorries:
        raise ContextError("the code has no `sorry`: write `sorry` where a proof state should start")
    starts = _declaration_starts(body, lexed)
    contexts = []
    for offset in sorries:
        index = bisect.bisect_right(starts, offset) - 1
        begin = starts[index] if index >= 0 else 0
        end = starts[index + 1] if index + 1 < len(starts) else len(body)
        declaration = body[begin:end].rstrip() + "\n"
        contexts.append(_goal_context(header, body[:begin], declaration, offset - begin, heartbeats))
    return contexts


def goal_context_from_context(context: str, heartbeats: int = 0) -> GoalContext:
    """From llmstep's ``context``: the file text up to the start of the ``llmstep`` token.

    A context that still ends with the call (``llmstep "..."`` on its last
    line) is cut at the call, so either convention works.
    """
    if not isinstance(context, str) or not context.strip():
        raise ContextError("no context given")
    text = context.replace("\r\n", "\n")
    last_line_start = text.rfind("\n") + 1
    match = re.search(rf"\b{CALL_TOKEN}\b", text[last_line_start:])
    if match is not None:
        text = text[: last_line_start + match.start()]
    return _build(text, heartbeats)


def goal_context_from_source(source: str, line: int, column: int, heartbeats: int = 0) -> GoalContext:
    """From the whole file and the call's 1-based line and 0-based code-point column."""
    if not isinstance(source, str) or not source.strip():
        raise ContextError("no source given")
    lines = source.replace("\r\n", "\n").split("\n")
    if not 1 <= line <= len(lines):
        raise ContextError(f"position line {line} is outside the source ({len(lines)} lines)")
    if not 0 <= column <= len(lines[line - 1]):
        raise ContextError(f"position column {column} is outside line {line} ({len(lines[line - 1])} characters)")
    before = "\n".join([*lines[: line - 1], lines[line - 1][:column]])
    return _build(before, heartbeats)


def build_goal_context(
    context: str | None = None,
    source: str | None = None,
    position: tuple[int, int] | None = None,
    heartbeats: int = 0,
) -> GoalContext:
    """``source`` + ``position`` when given, else ``context``; :class:`ContextError` when neither works."""
    if source is not None and position is not None:
        return goal_context_from_source(source, position[0], position[1], heartbeats)
    if context is not None:
        return goal_context_from_context(context, heartbeats)
    raise ContextError("no context: send `context` (file text up to the call) or `source` + `position`")
