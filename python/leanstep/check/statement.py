"""Is the theorem proved the theorem that was asked? The statement check, by text and by Lean.

A model rewarded for ``valid`` learns to weaken the statement: drop a
hypothesis' strength, change the goal, add a binder, rename the theorem. A
snippet may therefore carry the formal statement it had to prove
(``theorem foo (x : ℕ) : x + 0 = x``, with or without ``:= by sorry``).

* **By text** (every trust level): the submission must declare a theorem of
  that name whose signature (binders and type, up to ``:=``) is the statement's,
  comments removed and whitespace normalised (runs of blanks become one, and
  blanks next to a symbol go, so ``(x:ℕ)`` reads as ``(x : ℕ)``).
* **By Lean** (``strict`` and above): the reference is elaborated on the
  header's env, before and apart from the submission, as
  ``theorem leanstep_statement_<nonce> <signature> := sorry``; the submission
  then runs on that env, and one command of ours asks the kernel to accept the
  submitted constant as a proof of the reference:
  ``example : type_of% @_root_.<reference> := @_root_.<name>``. It elaborates
  only when the two types are definitionally equal, which is exactly when the
  submitted proof proves the asked statement. ``type_of%`` is a builtin term
  parser (``Lean.Parser.Term.typeOf``, ``src/Lean/Parser/Term.lean`` in
  leanprover/lean4); ``_root_.`` makes both names resolve exactly whatever
  namespace the submission left open (``resolveExact``,
  ``src/Lean/ResolveName.lean``). The submission cannot answer for us: at
  ``strict`` the source policy forbids user syntax, and the reference was built
  before any of its instances or notations existed. Its ``sorry`` is never
  reachable: the nonce is fresh per check, and a submission that used the
  reference anyway would depend on ``sorryAx``, which the axiom audit rejects.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from leanstep.check.lexer import CLOSERS, OPENERS, lex, line_starts
from leanstep.check.source import Declaration, declarations

STATEMENT_KINDS = frozenset({"theorem", "lemma", "example"})
REFERENCE_PREFIX = "leanstep_statement_"
_KEYWORD = re.compile(r"\s*(?:(?:private|protected|noncomputable)\s+)*(?P<kind>theorem|lemma|example)\b")
_NAME = re.compile(r"\s*(?P<name>(?:«[^»]*»|[^\s:()\[\]{}⦃⦄«»@]+))")
_BLANKS = re.compile(r"\s+")
_IDENT_CHAR = re.compile(r"[\w'!?.₀-₉ₐ-ₜ«»]")


class StatementError(ValueError):
    """The requested statement is not one theorem, lemma or example signature."""


@dataclass(frozen=True)
class Statement:
    """A requested statement: its kind, its name (None for ``example``) and its signature as written."""

    kind: str
    name: str | None
    signature: str  # binders and type, as written (comments kept), without `:=` and the proof

    @property
    def normalised(self) -> str:
        return normalise(self.signature)

    def reference_command(self, nonce: str) -> str:
        """The reference, to run on the header env (its ``sorry`` is never used: see the module docstring)."""
        return f"theorem {REFERENCE_PREFIX}{nonce} {self.signature.strip()} := sorry"

    def check_command(self, nonce: str) -> str:
        """Run on the submission's env: elaborates only if the submitted constant proves the reference."""
        assert self.name is not None
        return f"example : type_of% @_root_.{REFERENCE_PREFIX}{nonce} := @_root_.{self.name}"


def new_nonce() -> str:
    return secrets.token_hex(8)


def _without_comments(text: str) -> str:
    out = list(text)
    for start, end in lex(text).quiet:
        if text.startswith(("--", "/-"), start):
            for k in range(start, end):
                if out[k] != "\n":
                    out[k] = " "
    return "".join(out)


def normalise(signature: str) -> str:
    """Comments removed; blank runs become one space, and a blank next to a symbol goes."""
    text = _BLANKS.sub(" ", _without_comments(signature)).strip()
    kept = []
    for k, ch in enumerate(text):
        if ch == " ":
            before, after = text[k - 1], text[k + 1]
            if not (_IDENT_CHAR.match(before) and _IDENT_CHAR.match(after)):
                continue
        kept.append(ch)
    return "".join(kept)


def _shown(signature: str) -> str:
    return _BLANKS.sub(" ", _without_comments(signature)).strip()


def _signature_end(text: str, start: int) -> int:
    """Index of the top-level ``:=`` (or ``|`` at a line start, or ``where``) after ``start``; len(text) if none."""
    lexed = lex(text)
    depth = 0
    k = start
    n = len(text)
    while k < n:
        if lexed.is_quiet(k):
            k += 1
            continue
        ch = text[k]
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth = max(0, depth - 1)
        elif depth == 0:
            if text.startswith(":=", k):
                return k
            if ch == "|" and text[text.rfind("\n", 0, k) + 1:k].strip() == "":
                return k
            if text.startswith("where", k) and (k == 0 or not _IDENT_CHAR.match(text[k - 1])) and \
                    not _IDENT_CHAR.match(text[k + 5:k + 6] or " "):
                return k
        k += 1
    return n


def parse_statement(text: str) -> Statement:
    """The statement's kind, name and signature; ``StatementError`` when it is not one declaration's head."""
    code = _without_comments(text)
    keyword = _KEYWORD.match(code)
    if keyword is None:
        raise StatementError("the statement must start with `theorem`, `lemma` or `example`")
    kind = keyword.group("kind")
    start = keyword.end()
    name = None
    if kind != "example":
        found = _NAME.match(code, start)
        if found is None:
            raise StatementError(f"the statement's {kind} has no name")
        name = found.group("name").replace("«", "").replace("»", "")
        start = found.end()
    end = _signature_end(text, start)
    signature = text[start:end]
    if ":" not in normalise(signature):
        raise StatementError("the statement has no type (`: TYPE`)")
    rest = normalise(text[end:])
    if rest not in ("", ":=", ":=by", ":=by sorry", ":=sorry"):
        raise StatementError("the statement must be one declaration's head (`theorem name binders : type`), "
                             "optionally followed by `:= by sorry`")
    return Statement(kind, name, signature)


def _heads(text: str) -> Iterator[tuple[Declaration, str, Statement | None]]:
    """Each theorem, lemma or example of ``text`` with its head up to the top-level ``:=``
    (``theorem foo (x : ℕ) : x + 0 = x``) and the statement it reads as (None: it does not read as one)."""
    starts = line_starts(text)
    for decl in declarations(text):
        if decl.kind not in STATEMENT_KINDS:
            continue
        start = starts[decl.line - 1] + decl.column
        head = text[start:_signature_end(text, start)].rstrip()
        statement: Statement | None
        try:
            statement = parse_statement(head)
        except StatementError:
            statement = None
        yield decl, head, statement


def declaration_head(text: str) -> str | None:
    """The statement the first theorem, lemma or example of ``text`` proves: its head up to the top-level
    ``:=`` (``theorem foo (x : ℕ) : x + 0 = x``), or None when ``text`` declares none that reads as one."""
    _, head, statement = next(_heads(text), (None, None, None))
    return head if statement is not None else None


def standalone_statements(text: str) -> list[tuple[Declaration, str]]:
    """Each named theorem or lemma of ``text`` with its statement as a problem outside the file: its head with
    the name in full (``theorem Demo.foo (x : ℕ) : x + 0 = x`` for ``foo`` in ``namespace Demo``). Lean opens
    the namespaces of a declaration's full name for its signature, as the file's ``namespace`` did; what
    else the file gave the signature (its own definitions, ``variable``s, ``open``s) is not carried."""
    return [(decl, f"{statement.kind} {decl.name}{statement.signature}") for decl, _, statement in _heads(text)
            if statement is not None and decl.name is not None]


def declared_signature(body: str, statement: Statement) -> str | None:
    """The signature the submission gives the statement's theorem (None: it declares no such theorem).

    Matched by name for a theorem or lemma (``theorem`` and ``lemma`` are the same command), and for an
    ``example`` by signature among the submission's examples.
    """
    starts = line_starts(body)
    candidates = []
    for decl in declarations(body):
        if decl.kind not in STATEMENT_KINDS:
            continue
        if statement.name is not None and (decl.kind == "example" or decl.name != statement.name):
            continue
        if statement.name is None and decl.kind != "example":
            continue
        at = starts[decl.line - 1] + decl.column
        keyword = _KEYWORD.match(body, at)
        if keyword is None:
            continue
        start = keyword.end()
        if decl.kind != "example":
            found = _NAME.match(body, start)
            if found is None:
                continue
            start = found.end()
        candidates.append(body[start:_signature_end(body, start)])
    if statement.name is None:
        return next((c for c in candidates if normalise(c) == statement.normalised), candidates[0] if candidates
                    else None)
    return candidates[0] if candidates else None


def text_mismatch(body: str, statement: Statement) -> str | None:
    """Why the submission's text does not declare the statement (None: it does)."""
    what = f"`{statement.name}`" if statement.name else "an example"
    signature = declared_signature(body, statement)
    if signature is None:
        return f"statement differs: the submission declares no theorem {what}"
    if normalise(signature) != statement.normalised:
        return (f"statement differs: {what} is declared as `{_shown(signature)}`, "
                f"but the statement is `{_shown(statement.signature)}`")
    return None


__all__ = ["REFERENCE_PREFIX", "Statement", "StatementError", "declaration_head", "declared_signature", "new_nonce",
           "normalise", "parse_statement", "standalone_statements", "text_mismatch"]
