"""Split Lean source into its header (imports) and body, and read declarations from it.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def _skip_block_comment(text: str, i: int) -> int:
    """``text[i:]`` starts with ``/-``; return the index after the matching (nested) ``-/``, or len(text)."""
    depth = 0
    n = len(text)
    while i < n:
        if text.startswith("/-", i):
            depth += 1
            i += 2
        elif text.startswith("-/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _is_doc_comment(text: str, i: int) -> bool:
    return text.startswith("/--", i) or text.startswith("/-!", i)


def split_source(code: str) -> SourceSplit:
    """Cut ``code`` after its last header command (see the module docstring)."""
    n = len(code)
    i = 0
    header_end = 0  # index just after the newline that ends the last header line
    items: list[tuple[int, str]] = []  # (0-based user line, header line text)
    blanked: str | None = None
    while True:
        # skip whitespace and plain comments
        while i < n:
            if code[i] in " \t\r\n":
                i += 1
            elif code.startswith("--", i):
                j = code.find("\n", i)
                i = n if j < 0 else j
            elif code.startswith("/-", i) and not _is_doc_comment(code, i):
                i = _skip_block_comment(code, i)
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
                j = _skip_block_comment(code, j)
            else:
                j += 1
        if blanked is None:
            blanked = blank_comments(code)
        items.append((code.count("\n", 0, line_start), blanked[line_start:j]))
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


_SPECIAL = re.compile(r"--|/-|[\"']")


def blank_comments(code: str) -> str:
    """``code`` with comments and string literals replaced by spaces (newlines kept), so regexes see only code."""
    out = list(code)
    n = len(code)
    i = 0

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        found = _SPECIAL.search(code, i)  # jump straight to the next place that can start a comment or literal
        if found is None:
            break
        i = found.start()
        if code.startswith("--", i):
            j = code.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif code.startswith("/-", i):
            j = _skip_block_comment(code, i)
            blank(i, j)
            i = j
        elif code[i] == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            j = min(j + 1, n)
            blank(i, j)
            i = j
        elif code[i] == "'" and i + 2 < n and (code[i + 2] == "'" or code[i + 1] == "\\"):
            # a character literal such as 'a' or '\n'; skip it as a unit
            j = code.find("'", i + 2)
            j = n if j < 0 else j + 1
            blank(i, j)
            i = j
        else:
            i += 1
    return "".join(out)


_IDENT = r"(?:«[^»]*»|[^\s:()\[\]{}⦃⦄,.«»@]+)(?:\.(?:«[^»]*»|[^\s:()\[\]{}⦃⦄,.«»@]+))*"
_MODIFIERS = r"(?:(?:private|protected|noncomputable|partial|unsafe|nonrec|scoped|local)\s+)*"
_DECL = re.compile(
    r"^[ \t]*(?:open\s[^\n]*?\bin\s+)?(?:@\[[^\]]*\]\s*)*" + _MODIFIERS
    + r"(?P<kind>theorem|lemma|def|abbrev|instance|opaque|axiom|example)\b"
    + r"(?P<rest>[^\n]*)",
    re.MULTILINE,
)
_SCOPE = re.compile(r"^[ \t]*(?:noncomputable\s+)?(?P<kw>namespace|section|mutual|end)\b[ \t]*(?P<name>" + _IDENT + r")?",
                    re.MULTILINE)
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
    events: list[tuple[int, str, re.Match[str]]] = []
    for m in _SCOPE.finditer(text):
        events.append((m.start("kw"), "scope", m))
    for m in _DECL.finditer(text):
        events.append((m.start("kind"), "decl", m))
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


def line_count(text: str) -> int:
    """Number of lines ``text`` occupies (a trailing newline does not start a new one)."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)
