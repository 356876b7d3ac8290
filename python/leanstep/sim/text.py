"""Source-text helpers for the simulated REPL: comment masking, positions, bracket scanning.

Everything structural is done on a *masked* copy of the text in which comments and the
contents of string literals are blanked (newlines kept), so offsets stay identical and
brackets or keywords inside comments never confuse the scanners.
"""

from __future__ import annotations

import re
from bisect import bisect_right

_SPECIAL = re.compile(r'--|/-|"')
_BLOCK = re.compile(r"/-|-/")
_STRING_END = re.compile(r'\\.|"', re.DOTALL)
_NOT_NL = re.compile(r"[^\n]")
_NL = re.compile(r"\n")

OPEN = "([{⟨⦃"
CLOSE = ")]}⟩⦄"


def _blank(seg: str) -> str:
    return _NOT_NL.sub(" ", seg)


def mask(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Return (masked text, line comments as (start, end, text))."""
    if "--" not in text and "/-" not in text and '"' not in text:
        return text, []
    out: list[str] = []
    comments: list[tuple[int, int, str]] = []
    pos = 0
    n = len(text)
    while True:
        m = _SPECIAL.search(text, pos)
        if m is None:
            break
        start = m.start()
        out.append(text[pos:start])
        tok = m.group()
        if tok == "--":
            end = text.find("\n", start)
            if end < 0:
                end = n
            comments.append((start, end, text[start:end]))
            out.append(_blank(text[start:end]))
        elif tok == "/-":
            depth = 1
            k = m.end()
            end = n
            while depth:
                b = _BLOCK.search(text, k)
                if b is None:
                    end = n
                    break
                depth += 1 if b.group() == "/-" else -1
                k = b.end()
                end = k
            out.append(_blank(text[start:end]))
        else:
            k = m.end()
            end = n
            while True:
                s = _STRING_END.search(text, k)
                if s is None:
                    end = n
                    break
                if s.group() == '"':
                    end = s.end()
                    break
                k = s.end()
            out.append('"' + _blank(text[start + 1:end - 1]) + ('"' if end - start >= 2 else ""))
        pos = end
    out.append(text[pos:])
    return "".join(out), comments


class Source:
    """A submitted text with its masked copy and offset -> (line, column) mapping."""

    __slots__ = ("_starts", "comments", "masked", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.masked, self.comments = mask(text)
        self._starts = [0] + [m.end() for m in _NL.finditer(text)]

    def pos(self, off: int) -> dict:
        i = bisect_right(self._starts, off) - 1
        return {"line": i + 1, "column": off - self._starts[i]}

    def line_col(self, off: int) -> tuple[int, int]:
        i = bisect_right(self._starts, off) - 1
        return i + 1, off - self._starts[i]


def column(m: str, i: int) -> int:
    return i - (m.rfind("\n", 0, i) + 1)


def trim(m: str, s: int, e: int) -> tuple[int, int] | None:
    while s < e and m[s].isspace():
        s += 1
    while e > s and m[e - 1].isspace():
        e -= 1
    return (s, e) if s < e else None


def match_close(m: str, i: int, e: int) -> int:
    """Index of the bracket closing the one at i, or -1."""
    depth = 0
    for j in range(i, e):
        c = m[j]
        if c in OPEN:
            depth += 1
        elif c in CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return -1


def is_ident_char(c: str) -> bool:
    return c.isalnum() or c in "_'!?."


def word_at(m: str, i: int, word: str, e: int | None = None) -> bool:
    """True when `word` occurs at i as a whole word."""
    if e is None:
        e = len(m)
    if not m.startswith(word, i) or i + len(word) > e:
        return False
    if i > 0 and is_ident_char(m[i - 1]):
        return False
    j = i + len(word)
    return j >= e or not (m[j].isalnum() or m[j] in "_'")


def find_top(m: str, s: int, e: int, token: str, words: bool = False) -> list[int]:
    """Offsets of `token` at bracket depth 0 in m[s:e]."""
    res = []
    depth = 0
    j = s
    first = token[0]
    while j < e:
        c = m[j]
        if c in OPEN:
            depth += 1
        elif c in CLOSE:
            depth -= 1
        elif (depth == 0 and c == first and m.startswith(token, j) and j + len(token) <= e
              and (not words or word_at(m, j, token, e))):
            res.append(j)
            j += len(token)
            continue
        j += 1
    return res


def top_split(text: str, op: str) -> tuple[str, str] | None:
    """Split a plain goal string at the first depth-0 occurrence of op."""
    hits = find_top(text, 0, len(text), op)
    if not hits:
        return None
    k = hits[0]
    a, b = text[:k].strip(), text[k + len(op):].strip()
    if not a or not b:
        return None
    return a, b


def norm_ws(s: str) -> str:
    return " ".join(s.split())
