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

Rules apply to tokens (``check.lexer``), never to the text of comments or string
literals, so an honest proof that mentions ``native_decide`` in a comment is not
rejected. The lexer errs towards code, and a string literal whose end it cannot
tell is itself a violation: a rule may reject something harmless, but it can
never be hidden from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from leanstep.check.lexer import Token, tokens
from leanstep.check.verdict import Reason
from leanstep.repl.protocol import Pos

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
RESERVED_PREFIX = "leanstep_"
RESERVED_RULE = Rule("forbidden:reserved_name", "names starting with `leanstep_` are the verifier's own (the audit's "
                                                "example aliases, the statement check's reference)",
                     "leanstep audit design")
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

    def reason(self) -> Reason:
        return Reason(self.rule.code, f"`{self.token}`: {self.rule.what}", Pos(self.line, self.column))


@dataclass(frozen=True)
class SourcePolicy:
    """The strict level's token rules; ``allowed_imports`` None allows any import, ``allow_native`` the
    compiler-trusting constructs (``native_decide``)."""

    allowed_imports: frozenset[str] | None = None
    allow_native: bool = False

    def violations(self, code: str) -> list[Violation]:
        """Every broken rule in ``code`` (a whole submission, or its header or body alone), in source order."""
        toks = tokens(code)
        return sorted([*self._token_violations(toks), *self._import_violations(toks)],
                      key=lambda v: (v.line, v.column))

    def _token_violations(self, toks: list[Token]) -> list[Violation]:
        found: list[Violation] = []
        for k, tok in enumerate(toks):
            rule = self._rule_for(tok)
            if rule is not None:
                found.append(Violation(rule, tok.text, tok.line, tok.column))
            elif tok.text == "set_option" and k + 1 < len(toks) and toks[k + 1].text.startswith("debug."):
                option = toks[k + 1]
                found.append(Violation(Rule(f"forbidden:{option.text}", OPTION_RULE.what, OPTION_RULE.source),
                                       option.text, option.line, option.column))
        return found

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
        if any(part.startswith(RESERVED_PREFIX) for part in tok.text.split(".")):
            return RESERVED_RULE
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


def early_exits(code: str) -> list[Violation]:
    """``#exit`` anywhere in ``code``: at every trust level it ends elaboration, so what follows is never checked."""
    rule = COMMAND_RULES["#exit"]
    return [Violation(rule, tok.text, tok.line, tok.column) for tok in tokens(code)
            if tok.kind == "command" and tok.text == "#exit"]


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
