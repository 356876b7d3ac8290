"""The source policy of the ``strict`` trust level: token rules a submission must pass before a REPL sees it.

A submission that may be malicious can do more than prove things badly: it can
switch the kernel off (``set_option debug.skipKernelTC``), give the compiler an
unchecked implementation (``implemented_by``, ``extern``, ``@[csimp]``), trust
the compiler for a proof (``native_decide`` = the axiom ``Lean.ofReduceBool``),
run code while it is elaborated (``#eval``, ``run_cmd``, ``initialize``) that
adds declarations behind the kernel's back, or define syntax that answers our
own ``#print axioms`` audit (``macro_rules | `(#print axioms $x) => ...``). The
Lean reference manual ("Validating a Lean Proof") calls such input *malicious*
and says which checks stop which attack; the rules below are the ones that can
be decided from the text, each with its source.

Rules apply to tokens, never to the text of comments or string literals, so an
honest proof that mentions ``native_decide`` in a comment is not rejected. The
lexer errs towards code: the ``{...}`` parts of any string literal (string
interpolation) are lexed as code, raw strings (``r#"..."#``) and character
literals are read exactly, and anything it cannot classify stays code. A rule
may then reject something harmless; it can never be hidden from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# --------------------------------------------------------------------------- #
# Tokens


@dataclass(frozen=True)
class Token:
    """One code token: an identifier (``«»`` removed from its parts), a ``#command`` or a symbol."""

    text: str
    kind: str  # "ident", "command", "symbol" or "ambiguous" (a string literal whose end cannot be told)
    line: int  # 1-based
    column: int  # 0-based, in code points
    quoted: bool = False  # written with «», so an identifier even where the text is a keyword


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


class _Lexer:
    def __init__(self, code: str) -> None:
        self.code = code
        self.n = len(code)
        self.out: list[Token] = []
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", code)]

    def position(self, i: int) -> tuple[int, int]:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:  # the last line start <= i
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, i - self._line_starts[lo]

    def emit(self, text: str, kind: str, start: int, quoted: bool = False) -> None:
        line, column = self.position(start)
        self.out.append(Token(text, kind, line, column, quoted))

    def code_until(self, i: int, closing_brace: bool) -> int:
        """Lex code from ``i``; with ``closing_brace``, stop after the ``}`` that closes an interpolation."""
        code, n = self.code, self.n
        depth = 0
        while i < n:
            ch = code[i]
            if ch.isspace():
                i += 1
            elif code.startswith("--", i):
                j = code.find("\n", i)
                i = n if j < 0 else j
            elif code.startswith("/-", i):
                i = self.block_comment(i)
            elif ch == '"':
                i = self.string(i + 1)
            elif ch == "r" and _RAW_STRING.match(code, i) and not (i > 0 and _id_rest(code[i - 1])):
                i = self.raw_string(i)
            elif ch == "'" and not (i > 0 and _id_rest(code[i - 1])) and self.char_end(i) is not None:
                i = self.char_end(i)  # type: ignore[assignment]
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
                    self.emit("`", "symbol", i)
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
            else:
                self.emit(code[i:i + 2] if code.startswith(("@[", ":="), i) else ch, "symbol", i)
                i += 2 if code.startswith(("@[", ":="), i) else 1
        return n

    def block_comment(self, i: int) -> int:
        code, depth = self.code, 0
        while i < self.n:
            if code.startswith("/-", i):
                depth += 1
                i += 2
            elif code.startswith("-/", i):
                depth -= 1
                i += 2
                if depth == 0:
                    return i
            else:
                i += 1
        return self.n

    def string(self, i: int) -> int:
        """Inside a string literal after its ``"``; returns the index after it.

        Whether Lean reads the literal as interpolated (``s!"..{e}.."``, ``throwError
        "..{e}.."``, and any syntax a library declares) depends on what precedes it,
        so both readings are made: the ``{...}`` parts are lexed as code, and when
        the two readings disagree on where the literal ends (a brace holding another
        literal, or never closed) the literal is reported as ``ambiguous``.
        """
        start, code = i - 1, self.code
        plain_end = self.n
        j = i
        while j < self.n:
            if code[j] == "\\":
                j += 2
            elif code[j] == '"':
                plain_end = j + 1
                break
            else:
                j += 1
        mark = len(self.out)
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
            self.emit('"', "ambiguous", start)
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
                while i < n and _id_rest(code[i]):
                    i += 1
            if i + 1 < n and code[i] == "." and (_id_first(code[i + 1]) or code[i + 1] == "«"):
                i += 1
                continue
            return i

    @staticmethod
    def normalise(name: str) -> str:
        return unicodedata.normalize("NFC", name.replace("«", "").replace("»", ""))


def tokens(code: str) -> list[Token]:
    """The code tokens of Lean source (comments and literal text left out)."""
    lexer = _Lexer(code)
    lexer.code_until(0, closing_brace=False)
    return lexer.out


# --------------------------------------------------------------------------- #
# Rules

MANUAL = "Lean reference manual, 'Validating a Lean Proof'"
AUDIT_HIJACK = ("leanstep's audit runs `#print axioms` in the submission's own env; user syntax can answer it "
                "(macro_rules | `(#print axioms $x) => ...)")


@dataclass(frozen=True)
class Rule:
    """One forbidden construct: the reason code it gives, what it does, and where that is documented."""

    code: str
    what: str
    source: str


def _rules(names: Iterable[str], what: str, source: str) -> dict[str, Rule]:
    return {name: Rule(f"forbidden:{name}", what, source) for name in names}


KEYWORD_RULES: dict[str, Rule] = {
    **_rules(["axiom"], "declares an unproved assumption", MANUAL),
    **_rules(["opaque"], "an opaque constant's implementation is not unfolded by the kernel; "
                         "with implemented_by it runs unchecked code", MANUAL),
    **_rules(["unsafe"], "unsafe definitions are not checked by the kernel", f"{MANUAL}; SafeVerify rejects them"),
    **_rules(["prelude"], "drops the core library, so core names can be redefined", "leanprover/lean-eval SECURITY.md"),
    **_rules(["macro", "macro_rules", "syntax", "elab", "elab_rules", "declare_syntax_cat", "notation", "infix",
              "infixl", "infixr", "prefix", "postfix", "binder_predicate", "simproc", "dsimproc", "simproc_decl",
              "dsimproc_decl"],
             "user-defined syntax or elaborators can change what commands (the axiom audit included) mean",
             AUDIT_HIJACK),
    **_rules(["run_cmd", "run_elab", "run_meta", "run_tac", "by_elab", "initialize", "builtin_initialize",
              "register_simp_attr", "register_option"],
             "runs code at elaboration time, which can add declarations behind the kernel's back", MANUAL),
}
COMMAND_RULES: dict[str, Rule] = {
    **_rules(["#exit"], "ends elaboration: what follows is never checked", "measured on leanstep's verifier"),
    **_rules(["#eval", "#eval!", "#guard"], "runs code at elaboration time, which can add declarations behind "
                                            "the kernel's back", MANUAL),
}
# matched on an identifier's last component, so `open Lean in ofReduceBool` is caught too
NAME_RULES: dict[str, Rule] = {
    **_rules(["implemented_by", "extern"], "gives the compiler an implementation the kernel never checks",
             f"{MANUAL}; SafeVerify"),
    **_rules(["csimp"], "replaces a function by another in compiled code; with native_decide it smuggles in an "
                        "axiom", "leanprover/lean4#7463"),
    **_rules(["native_decide", "ofReduceBool", "ofReduceNat", "trustCompiler", "native"],
             "trusts the compiler for a proof (the axiom Lean.ofReduceBool)",
             f"{MANUAL}; 15 of 225 published miniF2F solutions of one prover relied on it"),
    **_rules(["sorryAx"], "the axiom behind sorry", MANUAL),
    **_rules(["unsafeCast", "unsafeBaseIO", "unsafeIO", "unsafeEIO"], "unsafe primitives", "SafeVerify"),
}
NATIVE_NAMES = frozenset({"native_decide", "ofReduceBool", "ofReduceNat", "trustCompiler", "native"})
OPTION_RULE = Rule("forbidden:debug.*", "debug options switch checks off (debug.skipKernelTC skips the kernel)",
                   MANUAL)
AMBIGUOUS_RULE = Rule("forbidden:ambiguous_string", "a string literal whose interpolated part holds another "
                                                     "literal (or is never closed): where it ends depends on the "
                                                     "syntax around it, so its text cannot be told from code",
                      "leanstep's source policy (it must never read code as text)")
IMPORT_RULE = Rule("import_not_allowed", "imports outside the server's allowlist can bring in axioms, attributes "
                                         "and code that the allowlist was meant to keep out",
                   "leanprover/comparator (the challenge's imports are fixed)")


@dataclass(frozen=True)
class Violation:
    """A rule broken by one token."""

    rule: Rule
    token: str
    line: int
    column: int

    @property
    def code(self) -> str:
        return self.rule.code

    def message(self) -> str:
        return f"{self.rule.code}: `{self.token}` at line {self.line}, column {self.column}: {self.rule.what}"


@dataclass(frozen=True)
class SourcePolicy:
    """The strict level's token rules; ``allowed_imports`` None allows any import, ``allow_native`` the
    compiler-trusting constructs (``native_decide``)."""

    allowed_imports: frozenset[str] | None = None
    allow_native: bool = False

    def violations(self, code: str) -> list[Violation]:
        """Every broken rule in ``code`` (a whole submission, header included), in source order."""
        found: list[Violation] = []
        toks = tokens(code)
        for k, tok in enumerate(toks):
            rule = self._rule_for(tok)
            if rule is not None:
                found.append(Violation(rule, tok.text, tok.line, tok.column))
            elif tok.text == "set_option" and k + 1 < len(toks) and toks[k + 1].text.startswith("debug."):
                option = toks[k + 1]
                found.append(Violation(Rule(f"forbidden:{option.text}", OPTION_RULE.what, OPTION_RULE.source),
                                       option.text, option.line, option.column))
        found += self._import_violations(toks)
        return sorted(found, key=lambda v: (v.line, v.column))

    def _rule_for(self, tok: Token) -> Rule | None:
        if tok.kind == "ambiguous":
            return AMBIGUOUS_RULE
        if tok.kind == "command":
            return COMMAND_RULES.get(tok.text)
        if tok.kind != "ident":
            return None
        rule = None if tok.quoted else KEYWORD_RULES.get(tok.text)
        if rule is not None:
            return rule
        last = tok.text.rsplit(".", 1)[-1]
        if self.allow_native and last in NATIVE_NAMES:
            return None
        return NAME_RULES.get(last)

    def _import_violations(self, toks: list[Token]) -> Iterator[Violation]:
        if self.allowed_imports is None:
            return
        for k, tok in enumerate(toks):
            if tok.text != "import" or tok.kind != "ident":
                continue
            module = next((t for t in toks[k + 1:k + 3] if t.kind == "ident" and t.text != "all"), None)
            if module is not None and not module_allowed(module.text, self.allowed_imports):
                yield Violation(IMPORT_RULE, module.text, module.line, module.column)


def module_allowed(module: str, allowed: frozenset[str]) -> bool:
    """``Mathlib.Tactic`` is allowed by ``Mathlib``: an allowed module's submodules are part of what it imports."""
    return any(module == a or module.startswith(a + ".") for a in allowed)


def imported_modules(header: str) -> frozenset[str]:
    """The modules a header imports (for the default allowlist: what the warm headers import)."""
    toks = tokens(header)
    found = set()
    for k, tok in enumerate(toks):
        if tok.text == "import" and tok.kind == "ident":
            module = next((t for t in toks[k + 1:k + 3] if t.kind == "ident" and t.text != "all"), None)
            if module is not None:
                found.add(module.text)
    return frozenset(found)
