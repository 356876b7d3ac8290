"""One lexer for Lean source: code tokens, and the spans that are not code (comments, literals).

Everything in ``check`` that must tell code from comments and literal text uses
it: the source policy (``check.policy``) reads its tokens, the file split and
the goal context (``check.source``) read its quiet spans. It errs towards code:
the ``{...}`` parts of any string literal (string interpolation) are lexed as
code, raw strings (``r#"..."#``) and character literals are read exactly, and a
string whose end depends on whether it is interpolated is reported as an
``ambiguous`` token. Comments nest as in Lean; doc comments are comments.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    """One code token: an identifier (``«»`` removed from its parts), a ``#command``, a bracket or ``@[``.

    Other symbols are not kept: nothing reads them. ``line`` and ``column`` are
    computed on demand (most tokens are never reported).
    """

    text: str
    kind: str  # "ident", "command", "symbol" or "ambiguous" (a string literal whose end cannot be told)
    offset: int
    quoted: bool = False  # written with «», so an identifier even where the text is a keyword
    line_starts: list[int] = field(default_factory=list, compare=False, repr=False)

    @property
    def line(self) -> int:
        """1-based."""
        return bisect.bisect_right(self.line_starts, self.offset)

    @property
    def column(self) -> int:
        """0-based, in code points."""
        return self.offset - self.line_starts[self.line - 1]


_EXCLUDED_LETTERS = frozenset("λΠΣ")


def _id_first(ch: str) -> bool:
    """Lean's ``isIdFirst``: a letter, ``_``, or a letter-like symbol (Greek, ℕ, ...), but not λ Π Σ."""
    if ch == "_" or (ch.isalpha() and ch not in _EXCLUDED_LETTERS):
        return True
    code = ord(ch)
    return 0x2100 <= code <= 0x214F or 0x1D49C <= code <= 0x1D59F or 0x1F00 <= code <= 0x1FFE


def _id_rest(ch: str) -> bool:
    """Lean's ``isIdRest``: an id-first character, a digit, ``'``, ``!``, ``?`` or a subscript."""
    return _id_first(ch) or ch.isdigit() or ch in "'!?" or 0x2080 <= ord(ch) <= 0x209C or ord(ch) in (0x1D62, 0x2C7C)


_RAW_STRING = re.compile(r'r(#*)"')
# Runs of characters that start nothing: not a letter, «, a comment or literal opener, #, `, @, a bracket or
# a letter-like symbol (the id-first ranges of _id_first), or a digit run.
_BORING = re.compile(
    "(?:[^\\w«\\-/\"'#`@(){}\\[\\]⟨⟩⦃⦄⟦⟧\u2100-\u214F\U0001D49C-\U0001D59F\u1F00-\u1FFE]|\\d|-(?!-)|/(?!-))*")
_ID_REST_RUN = re.compile(r"[\w'!?]*")  # most of _id_rest, matched at C speed


@dataclass(frozen=True)
class Lexed:
    """Lean text lexed once: its code tokens, the spans that are not code, and what is still open at the end."""

    tokens: tuple[Token, ...]
    quiet: tuple[tuple[int, int], ...]  # (start, end) offsets of comments and literals, in order
    open_at_end: str | None  # "comment", "line comment" or "string": the text ends inside one

    def is_quiet(self, offset: int) -> bool:
        """Whether ``offset`` lies inside (not at the start of) a comment or a literal."""
        lo, hi = 0, len(self.quiet)
        while lo < hi:  # the first span starting at or after offset
            mid = (lo + hi) // 2
            if self.quiet[mid][0] < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo > 0 and self.quiet[lo - 1][1] > offset


OPENERS = {"(": ")", "[": "]", "{": "}", "⟨": "⟩", "⦃": "⦄", "⟦": "⟧"}
CLOSERS = {v: k for k, v in OPENERS.items()}


def open_brackets(toks: Sequence[Token]) -> list[str]:
    """The brackets still open after ``toks``, innermost last (a stray closer is ignored)."""
    stack: list[str] = []
    for tok in toks:
        if tok.kind != "symbol":
            continue
        if tok.text in OPENERS or tok.text == "@[":
            stack.append(tok.text[-1])
        elif tok.text in CLOSERS and stack and stack[-1] == CLOSERS[tok.text]:
            stack.pop()
    return stack


def line_starts(text: str) -> list[int]:
    """The offset in ``text`` at which each of its lines starts (line ``n`` at index ``n - 1``)."""
    return [0] + [m.end() for m in re.finditer("\n", text)]


class _Lexer:
    def __init__(self, code: str) -> None:
        self.code = code
        self.n = len(code)
        self.out: list[Token] = []
        self.quiet: list[tuple[int, int]] = []
        self.open_at_end: str | None = None
        self._line_starts = line_starts(code)

    def emit(self, text: str, kind: str, start: int, quoted: bool = False) -> None:
        self.out.append(Token(text, kind, start, quoted, self._line_starts))

    def code_until(self, i: int, closing_brace: bool) -> int:
        """Lex code from ``i``; with ``closing_brace``, stop after the ``}`` that closes an interpolation."""
        code, n = self.code, self.n
        depth = 0
        while i < n:
            ch = code[i]
            boring = _BORING.match(code, i).end()  # type: ignore[union-attr]
            if boring > i:  # whitespace, numbers, operators: nothing a rule or a bracket count reads
                i = boring
            elif code.startswith("--", i):
                j = code.find("\n", i)
                if j < 0:
                    self.open_at_end = "line comment"
                i = self.span(i, n if j < 0 else j)
            elif code.startswith("/-", i):
                i = self.span(i, self.block_comment(i))
            elif ch == '"':
                i = self.span(i, self.string(i + 1))
            elif ch == "r" and _RAW_STRING.match(code, i) and not (i > 0 and _id_rest(code[i - 1])):
                i = self.span(i, self.raw_string(i))
            elif ch == "'" and not (i > 0 and _id_rest(code[i - 1])) and (end := self.char_end(i)) is not None:
                i = self.span(i, end)
            elif ch == "#" and i + 1 < n and _id_first(code[i + 1]):
                j = self.ident_end(i + 1)
                self.emit("#" + self.normalise(code[i + 1:j]), "command", i)
                i = j
            elif _id_first(ch) or (ch == "«" and "»" in code[i:]):
                j = self.ident_end(i)
                self.emit(self.normalise(code[i:j]), "ident", i, quoted="«" in code[i:j])
                i = j
            elif ch == "`":
                j = i
                while j < n and code[j] == "`":
                    j += 1
                if j < n and (_id_first(code[j]) or code[j] == "«"):
                    k = self.ident_end(j)
                    self.emit(self.normalise(code[j:k]), "ident", j)  # a quoted name is the name it refers to
                    i = k
                else:
                    i = j
            elif ch == "{":
                depth += 1
                self.emit(ch, "symbol", i)
                i += 1
            elif ch == "}":
                if closing_brace and depth == 0:
                    return i + 1
                depth -= 1
                self.emit(ch, "symbol", i)
                i += 1
            elif ch in OPENERS or ch in CLOSERS:
                self.emit(ch, "symbol", i)
                i += 1
            elif code.startswith("@[", i):
                self.emit("@[", "symbol", i)
                i += 2
            else:
                i += 1
        return n

    def span(self, start: int, end: int) -> int:
        """Record ``[start, end)`` as not code; returns ``end``."""
        self.quiet.append((start, end))
        return end

    def block_comment(self, i: int) -> int:
        end = block_comment_end(self.code, i)
        if end < 0:
            self.open_at_end = "comment"
            return self.n
        return end

    def string(self, i: int) -> int:
        """Inside a string literal after its ``"``; returns the index after it.

        Whether Lean reads the literal as interpolated (``s!"..{e}.."``, ``throwError
        "..{e}.."``, and any syntax a library declares) depends on what precedes it,
        so both readings are made: the ``{...}`` parts are lexed as code, and when
        the two readings disagree on where the literal ends (a brace holding another
        literal, or never closed) the literal is reported as ``ambiguous``.
        """
        start, code = i - 1, self.code
        plain_end, closed = self.n, False
        j = i
        while j < self.n:
            if code[j] == "\\":
                j += 2
            elif code[j] == '"':
                plain_end, closed = j + 1, True
                break
            else:
                j += 1
        mark, quiet_mark, open_before = len(self.out), len(self.quiet), self.open_at_end
        while i < self.n:
            ch = code[i]
            if ch == "\\":
                i += 2
            elif ch == '"':
                i += 1
                break
            elif ch == "{":
                i = self.code_until(i + 1, closing_brace=True)
            else:
                i += 1
        if min(i, self.n) != plain_end:
            del self.out[mark:]
            del self.quiet[quiet_mark:]
            self.emit('"', "ambiguous", start)
        self.open_at_end = open_before if closed else "string"
        return plain_end

    def raw_string(self, i: int) -> int:
        m = _RAW_STRING.match(self.code, i)
        assert m is not None
        end = self.code.find('"' + m.group(1), m.end())
        return self.n if end < 0 else end + 1 + len(m.group(1))

    def char_end(self, i: int) -> int | None:
        """The end of a character literal at ``i`` (``'a'``, ``'\\n'``, ``'\\u{3bb}'``), or None."""
        code = self.code
        if i + 2 < self.n and code[i + 1] != "\\" and code[i + 2] == "'":
            return i + 3
        if i + 1 < self.n and code[i + 1] == "\\":
            j = code.find("'", i + 2, i + 14)
            return None if j < 0 else j + 1
        return None

    def ident_end(self, i: int) -> int:
        code, n = self.code, self.n
        while True:
            if i < n and code[i] == "«":
                j = code.find("»", i + 1)
                i = n if j < 0 else j + 1
            else:
                i = _ID_REST_RUN.match(code, i).end()  # type: ignore[union-attr]
                while i < n and _id_rest(code[i]):  # the rarer id characters \w does not cover
                    i = _ID_REST_RUN.match(code, i + 1).end()  # type: ignore[union-attr]
            if i + 1 < n and code[i] == "." and (_id_first(code[i + 1]) or code[i + 1] == "«"):
                i += 1
                continue
            return i

    @staticmethod
    def normalise(name: str) -> str:
        return unicodedata.normalize("NFC", name.replace("«", "").replace("»", ""))


_COMMENT_MARK = re.compile(r"/-|-/")


def block_comment_end(text: str, i: int) -> int:
    """``text[i:]`` starts with ``/-``: the index after its matching (nested) ``-/``, or -1 if it never closes."""
    depth = 0
    for mark in _COMMENT_MARK.finditer(text, i):
        depth += 1 if mark.group() == "/-" else -1
        if depth == 0:
            return mark.end()
    return -1


def blank_quiet(text: str) -> str:
    """``text`` with comments and literals replaced by spaces (newlines kept), so regexes see only code."""
    out = list(text)
    for start, end in lex(text).quiet:
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def lex(code: str) -> Lexed:
    """Lex Lean source once (see the module docstring).

    Remembered for the last 1,024 texts: checking one snippet reads its header and body several times
    (the split, the nothing-to-check rule, the policy, the audit's plan), and a result is immutable.
    """
    lexer = _Lexer(code)
    lexer.code_until(0, closing_brace=False)
    return Lexed(tuple(lexer.out), tuple(sorted(lexer.quiet)), lexer.open_at_end)


def tokens(code: str) -> list[Token]:
    """The code tokens of Lean source (comments and literal text left out)."""
    return list(lex(code).tokens)


# --------------------------------------------------------------------------- #
# Rules
