"""Command-level elaboration of a `cmd`/`path` text for the simulated REPL."""

from __future__ import annotations

import re
from collections.abc import Callable

from .arith import eval_expr, number_type, pretty
from .semantics import (
    _CMD_KEYWORDS,
    _DECL,
    _SILENT,
    _TYPE_DECLS,
    PROOF_KINDS,
    SORRY_AX,
    Ctx,
    Decl,
    Goal,
    ParseError,
    TacticError,
    binders_to_hyps,
    command_starts,
    directives_by_chunk,
    header_imports,
    resolve,
)
from .text import Source, find_top, match_close, norm_ws, trim, word_at

_FIRST = re.compile(r"[#@]?[^\W\d][\w.'!?]*|\S")
_NAME = re.compile(r"\s+([^\s(\[{⦃:]+)")


def axiom_key(name: str) -> tuple[int, list[str]]:
    parts = name.split(".")
    return (len(parts), parts)


def elaborate(src: Source, base_names: dict | None, with_header: bool, record: bool,
              directive: Callable, proof_cost: Callable[[], None]) -> tuple[Ctx, list[str]]:
    """Elaborate a whole text; return the context (messages, sorries, ...) and imports."""
    m = src.masked
    names = dict(base_names) if base_names else {}
    ctx = Ctx(src, names, tactic_mode=False, record=record, directive=directive)
    imports: list[str] = []
    body = 0
    if with_header:
        mods, body = header_imports(m)
        imports = [x[2] for x in mods]
        for s, e, mod in mods:
            if "Nonexistent" in mod:
                first = mod.split(".")[0]
                ctx.log("error", f"unknown module prefix '{first}'\n\nNo directory '{first}' or "
                                 f"file '{first}.olean' in the search path entries:\n(simulated)",
                        s, e)
    starts = command_starts(m, body)
    chunks = []
    for i, cs in enumerate(starts):
        ce = starts[i + 1] if i + 1 < len(starts) else len(m)
        r = trim(m, cs, ce)
        chunks.append((cs, ce, r[1] if r else cs))
    dirs, tail = directives_by_chunk(src, chunks) if src.comments else ({}, [])
    scopes: list[int] = []
    for i, (cs, _ce, cend) in enumerate(chunks):
        ds = dirs.get(i, ())
        for name, arg, s, e in ds:
            ctx.directive(name, arg, s, e)
        has_delay = any(d[0] == "delay" for d in ds)
        if _run_chunk(ctx, cs, cend, has_delay, proof_cost, scopes):
            break
    for name, arg, s, e in tail:
        ctx.directive(name, arg, s, e)
    return ctx, imports


def _run_chunk(ctx: Ctx, cs: int, cend: int, has_delay: bool, proof_cost: Callable[[], None],
               scopes: list[int]) -> bool:
    """Run one command; return True to stop (#exit)."""
    m = ctx.m
    dm = _DECL.match(m, cs)
    if dm and dm.end() <= cend:
        _run_decl(ctx, dm, cend, has_delay, proof_cost)
        return False
    fm = _FIRST.match(m, cs)
    if fm is None:  # only blanks: nothing to run
        return False
    word = fm.group()
    we = fm.end()
    rest = m[we:cend].strip()
    if word == "import":
        eol = m.find("\n", cs)
        eol = cend if eol < 0 or eol > cend else eol
        ctx.log("error", "invalid 'import' command, it must be used in the beginning of the file",
                cs, eol)
    elif word == "variable":
        _variable(ctx, m, we, cend)
    elif word == "include":
        for name in rest.split():
            if name in ctx.variables and name not in ctx.included:
                ctx.included.append(name)
    elif word == "namespace":
        parts = rest.split()[0].split(".") if rest else []
        ctx.ns.extend(parts)
        scopes.append(len(parts))
    elif word == "section":
        scopes.append(0)
    elif word == "end":
        if scopes:
            k = scopes.pop()
            if k:
                del ctx.ns[-k:]
    elif word == "#print":
        if rest.startswith("axioms"):
            target = rest[6:].strip()
            full = resolve(ctx.names, ctx.ns, target)
            if full is None:
                ctx.log("error", f"Unknown constant `{target}`", cs, we)
            else:
                axs = sorted(ctx.names[full].axioms, key=axiom_key)
                if axs:
                    ctx.log("info", f"'{full}' depends on axioms: [{', '.join(axs)}]", cs, we)
                else:
                    ctx.log("info", f"'{full}' does not depend on any axioms", cs, we)
        else:
            full = resolve(ctx.names, ctx.ns, rest)
            if full is None:
                ctx.log("error", f"Unknown constant `{rest}`", cs, we)
            else:
                d = ctx.names[full]
                ctx.log("info", f"{d.kind} {full} : {d.type}", cs, we)
    elif word == "#check":
        _check(ctx, cs, we, cend, rest)
    elif word == "#eval":
        _eval(ctx, cs, we, cend, rest)
    elif word == "#exit":
        ctx.log("warning", "using 'exit' to interrupt Lean", cs, we)
        return True
    elif word in _TYPE_DECLS:
        nm = _NAME.match(m, we)
        if nm:
            full = ".".join([*ctx.ns, nm.group(1)])
            if full in ctx.names:
                ctx.log("error", f"'{full}' has already been declared", nm.start(1), nm.end(1))
            else:
                ctx.names[full] = Decl(word, "Type", frozenset(), None)
    elif word in _SILENT:
        pass
    elif re.fullmatch(r"[^\W\d][\w.'!?]*", word) and word not in _CMD_KEYWORDS:
        ctx.log("error", "unexpected identifier; expected command", cs, we)
    else:
        ctx.log("error", f"unexpected token '{word}'; expected command", cs, we)
    return False


BUILTIN_TYPES = {"True": "Prop", "False": "Prop", "Nat": "Type", "Int": "Type", "Prop": "Type", "Type": "Type 1"}


def _check(ctx: Ctx, cs: int, we: int, cend: int, rest: str) -> None:
    if re.fullmatch(r"[^\W\d][\w.'!?]*", rest):
        full = resolve(ctx.names, ctx.ns, rest)
        if full is not None:
            ctx.log("info", f"{rest} : {ctx.names[full].type}", cs, we)
            return
        if "." not in rest and rest not in ("True", "False", "Nat", "Int", "Prop", "Type"):
            s = ctx.m.find(rest, we)
            ctx.log("error", f"Unknown identifier `{rest}`", s, s + len(rest))
            return
    typ = BUILTIN_TYPES.get(rest) or (number_type(rest) if eval_expr(rest) is not None else None)
    ctx.log("info", f"{pretty(rest)} : {typ or '?'}", cs, we)


def _eval(ctx: Ctx, cs: int, we: int, cend: int, rest: str) -> None:
    raw = ctx.src.text[we:cend].strip()
    if raw.startswith('"'):
        ctx.log("info", raw, cs, we)
        return
    val = eval_expr(_substitute_values(ctx, rest))
    if val is None and re.fullmatch(r"[^\W\d][\w.'!?]*", rest):
        full = resolve(ctx.names, ctx.ns, rest)
        if full is not None:
            val = ctx.names[full].value
        elif "." not in rest:
            s = ctx.m.find(rest, we)
            ctx.log("error", f"Unknown identifier `{rest}`", s, s + len(rest))
            return
    ctx.log("info", val if val is not None else norm_ws(rest), cs, we)


def _substitute_values(ctx: Ctx, text: str) -> str:
    def sub(mt: re.Match) -> str:
        full = resolve(ctx.names, ctx.ns, mt.group())
        value = ctx.names[full].value if full is not None else None
        return f"({value})" if value is not None else mt.group()
    return re.sub(r"(?<![\w.'])[^\W\d][\w.']*", sub, text)


def _run_decl(ctx: Ctx, dm: re.Match[str], cend: int, has_delay: bool, proof_cost: Callable[[], None]) -> None:
    m = ctx.m
    kind = dm.group(2)
    kw_s, kw_e = dm.start(2), dm.end(2)
    i = dm.end()
    name = None
    name_s = name_e = 0
    if kind != "example":
        nm = _NAME.match(m, i)
        if nm and nm.end() <= cend and not nm.group(1).startswith(":="):
            name, name_s, name_e = nm.group(1), nm.start(1), nm.end(1)
            i = nm.end()
        elif kind != "instance":
            ctx.log("error", "unexpected token; expected identifier", i, i)
            return
    binders_start = i
    hyps, i = binders_to_hyps(m, i, cend)
    included = [ctx.variables[name] for name in ctx.included]
    hyps = [h for group in included for h in binders_to_hyps(group, 0, len(group))[0]] + hyps
    assign = find_top(m, i, cend, ":=")
    sig_end = assign[0] if assign else cend
    alt = re.search(r"\n\s*\||\bwhere\b", m[i:sig_end])
    if alt:
        sig_end = i + alt.start()
        assign = []
    j = i
    while j < sig_end and m[j].isspace():
        j += 1
    typ = pretty(m[j + 1:sig_end]) if j < sig_end and m[j] == ":" else None
    full = ".".join([*ctx.ns, name]) if name else None
    signature = re.sub(r"\s+", "", "".join(included) + m[binders_start:sig_end])
    if kind == "example" and _type_of(ctx, m[binders_start:sig_end], m, assign, cend, kw_s, kw_e):
        return
    if full is not None and full in ctx.names:
        ctx.log("error", f"'{full}' has already been declared", name_s, name_e)
        return
    if kind in PROOF_KINDS and assign and not has_delay:
        proof_cost()
    ctx.axioms = set()
    ctx.tainted = False
    ctx.sorry_count = 0
    snap = (len(ctx.messages), len(ctx.sorries), len(ctx.roots), len(ctx.tactics))
    goal = Goal(tuple(hyps), typ or "?")
    value = None
    if kind == "axiom":
        axioms = {full} if full else set()
    else:
        if assign:
            bs = assign[0] + 2
            r = trim(m, bs, cend)
            try:
                if r is None:
                    raise ParseError("expected term", cend, cend)
                if word_at(m, r[0], "by", cend):
                    ctx.run_by(r[0], r[0] + 2, r[1], goal, root=True)
                else:
                    ctx.elab_term(r[0], r[1], goal, thrown=False)
                    value = eval_expr(m[r[0]:r[1]])
                    if typ is None and value is not None:
                        typ = number_type(m[r[0]:r[1]])
            except ParseError as err:
                del ctx.messages[snap[0]:]
                del ctx.sorries[snap[1]:]
                del ctx.roots[snap[2]:]
                del ctx.tactics[snap[3]:]
                ctx.sorry_count = 0
                ctx.error(err.msg, err.s, err.e)
            except TacticError as err:  # defensive: run_by never lets one escape
                ctx.error(err.msg, err.s, err.e)
            ctx._ref_axioms(bs, cend)
        axioms = set(ctx.axioms)
        if ctx.tainted:
            axioms.add(SORRY_AX)
    if ctx.sorry_count:
        if name:
            ctx.log("warning", "declaration uses `sorry`", name_s, name_e)
        else:
            ctx.log("warning", "declaration uses `sorry`", kw_s, kw_e)
    if full is not None:
        ctx.names[full] = Decl(kind, typ or "?", frozenset(axioms), value, signature)


def _variable(ctx: Ctx, m: str, s: int, e: int) -> None:
    """``variable (h : T) {x : U}``: remember each name's binder, for ``include`` to add to later theorems."""
    i = s
    while True:
        while i < e and m[i].isspace():
            i += 1
        if i >= e or m[i] not in "([{⦃":
            return
        close = match_close(m, i, e)
        if close < 0:
            return
        group = m[i:close + 1]
        colon = find_top(group, 1, len(group) - 1, ":")
        names = group[1:colon[0]].split() if colon else []
        for name in names:
            ctx.variables[name] = f"{group[0]}{name} :{group[colon[0] + 1:-1]}{group[-1]}"
        i = close + 1


_TYPE_OF = re.compile(r"\s*:\s*type_of%\s*@(\S+)\s*$")


def _type_of(ctx: Ctx, signature: str, m: str, assign: list[int], cend: int, s: int, e: int) -> bool:
    """``example : type_of% @A := @B``: accepted when A and B have the same signature (Lean: defeq types)."""
    found = _TYPE_OF.match(signature)
    if found is None or not assign:
        return False
    term = m[assign[0] + 2:cend].strip()
    wanted = resolve(ctx.names, ctx.ns, found.group(1))
    given = resolve(ctx.names, ctx.ns, term[1:]) if term.startswith("@") else None
    if wanted is None or given is None:
        missing = found.group(1) if wanted is None else term
        ctx.log("error", f"unknown constant '{missing}'", s, e)
    elif ctx.names[wanted].signature != ctx.names[given].signature:
        ctx.log("error", f"type mismatch\n  @{given}\nhas type\n  {ctx.names[given].signature} : Prop\n"
                         f"but is expected to have type\n  {ctx.names[wanted].signature} : Prop", s, e)
    return True
