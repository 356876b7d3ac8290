"""Safe decision procedure for closed arithmetic propositions (no eval of user text).

`decide_prop(text)` returns True / False for propositions built only from integer literals,
`+ - * / % ^`, parentheses, type ascriptions to a number type, comparisons, `¬ ∧ ∨ → ↔`,
`True` and `False`; it returns None (opaque) for anything else.  Numbers follow Lean's
semantics: ℕ by default (truncated subtraction, x / 0 = 0, x % 0 = x), ℤ when `Int`/`ℤ` or a
unary minus appears (Euclidean `/` and `%`), ℚ when `ℚ`/`ℝ`/`Rat`/`Real` appears.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from typing import TypeVar

_TOK = re.compile(
    r"\s*(?:(\d+)|(True|False)|(ℕ|ℤ|ℚ|ℝ|Nat|Int|Rat|Real)\b|"
    r"(<=|>=|!=|≠|≤|≥|<|>|=|\+|-|\*|/\\|\\/|/|%|\^|\(|\)|∧|∨|¬|↔|→|:))"
)
_INT_TYPES = {"ℤ", "Int"}
_RAT_TYPES = {"ℚ", "ℝ", "Rat", "Real"}
_MAX_EXP = 4096
_MAX_BITS = 1 << 16


Number = int | Fraction  # ℕ and ℤ values are ints, ℚ and ℝ values Fractions
Token = tuple[str, str]  # (kind, text): kind is num, const, type or op
ValueT = TypeVar("ValueT")


class _Opaque(Exception):
    """The text is not a closed arithmetic proposition this module decides."""


def tokenize(text: str) -> list[Token] | None:
    toks: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOK.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            return None
        pos = m.end()
        if m.group(1) is not None:
            toks.append(("num", m.group(1)))
        elif m.group(2) is not None:
            toks.append(("const", m.group(2)))
        elif m.group(3) is not None:
            toks.append(("type", m.group(3)))
        else:
            op = m.group(4)
            op = {"<=": "≤", ">=": "≥", "!=": "≠", "/\\": "∧", "\\/": "∨"}.get(op, op)
            toks.append(("op", op))
    return toks


class _Parser:
    def __init__(self, toks: list[Token], mode: str) -> None:
        self.t = toks
        self.i = 0
        self.mode = mode

    def peek(self) -> str | None:
        return self.t[self.i][1] if self.i < len(self.t) else None

    def take(self, v: str | None = None) -> Token:
        if self.i >= len(self.t):
            raise _Opaque
        tok = self.t[self.i]
        if v is not None and tok[1] != v:
            raise _Opaque
        self.i += 1
        return tok

    # propositions
    def prop(self) -> bool:
        a = self.imp()
        if self.peek() == "↔":
            self.take()
            b = self.imp()
            return a == b
        return a

    def imp(self) -> bool:
        a = self.disj()
        if self.peek() == "→":
            self.take()
            b = self.imp()
            return (not a) or b
        return a

    def disj(self) -> bool:
        a = self.conj()
        if self.peek() == "∨":
            self.take()
            b = self.disj()
            return a or b
        return a

    def conj(self) -> bool:
        a = self.neg()
        if self.peek() == "∧":
            self.take()
            b = self.conj()
            return a and b
        return a

    def neg(self) -> bool:
        if self.peek() == "¬":
            self.take()
            return not self.neg()
        return self.atom()

    def atom(self) -> bool:
        p = self.peek()
        if p in ("True", "False"):
            self.take()
            return p == "True"
        save = self.i
        try:
            return self.rel()
        except _Opaque:
            self.i = save
        if p == "(":
            self.take("(")
            v = self.prop()
            self.take(")")
            return v
        raise _Opaque

    def rel(self) -> bool:
        a = self.expr()
        op = self.peek()
        if op not in ("=", "≠", "<", ">", "≤", "≥"):
            raise _Opaque
        self.take()
        b = self.expr()
        return {"=": a == b, "≠": a != b, "<": a < b, ">": a > b, "≤": a <= b, "≥": a >= b}[op]

    # expressions
    def expr(self) -> Number:
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            w = self.term()
            v = v + w if op == "+" else v - w
            if self.mode == "nat" and v < 0:
                v = 0
        return v

    def term(self) -> Number:
        v = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take()[1]
            w = self.unary()
            magnitude = -w if w < 0 else w
            if op == "*":
                v = v * w
            elif op == "/":
                if w == 0:
                    v = 0
                elif self.mode == "rat":
                    v = Fraction(v) / w
                elif self.mode == "int":
                    q = v // magnitude
                    v = q if w > 0 else -q
                else:
                    v = v // w
            else:
                if self.mode == "rat":
                    raise _Opaque
                v = v if w == 0 else v % magnitude
            self._check(v)
        return v

    def unary(self) -> Number:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        return self.power()

    def power(self) -> Number:
        base = self.primary()
        if self.peek() == "^":
            self.take()
            e = self.unary()
            if e != int(e) or e < 0 or e > _MAX_EXP:
                raise _Opaque
            base = base ** int(e)
            self._check(base)
        return base

    def primary(self) -> Number:
        kind, v = self.take()
        if kind == "num":
            n = int(v)
            return Fraction(n) if self.mode == "rat" else n
        if v == "(":
            x = self.expr()
            if self.peek() == ":":
                self.take()
                if self.take()[0] != "type":
                    raise _Opaque
            self.take(")")
            return x
        raise _Opaque

    @staticmethod
    def _check(v: Number) -> None:
        if abs(v.numerator).bit_length() > _MAX_BITS:
            raise _Opaque


def _mode(toks: list[Token]) -> str:
    types = {v for k, v in toks if k == "type"}
    if types & _RAT_TYPES:
        return "rat"
    if types & _INT_TYPES:
        return "int"
    prev = None
    for k, v in toks:
        if v == "-" and (prev is None or (prev[0] == "op" and prev[1] != ")")):
            return "int"
        prev = (k, v)
    return "nat"


def _read_all(text: str, rule: Callable[[_Parser], ValueT]) -> ValueT | None:
    """``rule`` applied to the whole of ``text``; None when it is empty, not closed arithmetic, or longer."""
    toks = tokenize(text)
    if not toks:
        return None
    p = _Parser(toks, _mode(toks))
    try:
        v = rule(p)
    except (_Opaque, ZeroDivisionError, OverflowError, ValueError):
        return None
    return v if p.i == len(toks) else None


@lru_cache(maxsize=4096)
def decide_prop(text: str) -> bool | None:
    """True/False for a closed arithmetic proposition, None when not decidable here."""
    v = _read_all(text, _Parser.prop)
    return None if v is None else bool(v)


def eval_expr(text: str) -> str | None:
    """Value of a closed arithmetic expression as Lean would print it, or None."""
    v = _read_all(text, _Parser.expr)
    return None if v is None else str(v)


def number_type(text: str) -> str | None:
    toks = tokenize(text)
    if not toks:
        return None
    return {"nat": "Nat", "int": "Int", "rat": "Rat"}[_mode(toks)]


@lru_cache(maxsize=4096)
def pretty(text: str) -> str:
    """Normalise spacing like Lean's pretty printer when the text is pure arithmetic."""
    flat = " ".join(text.split())
    toks = tokenize(flat)
    if not toks:
        return flat
    out: list[str] = []
    glue = True  # no space before the next token
    prev = None
    for kind, v in toks:
        unary = v == "-" and (prev is None or (prev[0] == "op" and prev[1] != ")"))
        if v == ")" or glue:
            out.append(v)
        else:
            out.append(" " + v)
        glue = v in ("(", "¬") or unary
        prev = (kind, v)
    return "".join(out)
