"""The simulator's toy Lean: goals, tactics and commands (documented in leanstep.sim).

Pure computation on text; the only side effects go through `Ctx.directive`, a callback the
REPL loop supplies for `sim_*` tactics and `-- sim:` comments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import Enum

from .arith import decide_prop, eval_expr, number_type, pretty
from .text import (
    CLOSE,
    OPEN,
    Source,
    column,
    find_top,
    match_close,
    norm_ws,
    top_split,
    trim,
    word_at,
)

CLASSICAL = frozenset({"propext", "Classical.choice", "Quot.sound"})
SORRY_AX = "sorryAx"

# closing tactics -> axioms their proofs use
_CLOSE_CLASSICAL = {
    "simp", "simp_all", "simpa", "simp_arith", "norm_num", "omega", "linarith", "nlinarith",
    "positivity", "ring", "ring1", "aesop", "tauto", "decide", "polyrith", "bound", "grind",
    "exact_mod_cast", "assumption_mod_cast", "linear_combination", "abel", "group", "module",
    "cc", "exact?", "apply?", "continuity", "measurability", "fun_prop", "subsingleton",
    "norm_num1", "field_simp", "itauto", "simp?", "simp_all?", "aesop?", "decide!",
}
_CLOSE_PLAIN = {"rfl", "trivial", "assumption", "contradiction", "rwa", "ac_rfl", "eq_refl",
                "exact", "calc"}
_CLOSE_NATIVE = {"native_decide"}
CLOSERS = _CLOSE_CLASSICAL | _CLOSE_PLAIN | _CLOSE_NATIVE
# tactics that leave the goal unchanged
_PROGRESS = {
    "skip", "rw", "rewrite", "nth_rewrite", "nth_rw", "rw_mod_cast", "unfold", "dsimp",
    "simp_rw", "push_neg", "push_cast", "norm_cast", "ring_nf", "subst", "subst_vars", "symm",
    "ext", "funext", "congr", "gcongr", "specialize", "clear", "rename_i", "revert",
    "generalize", "set", "lift", "use", "exists", "existsi", "refine", "refine'", "conv",
    "split", "interval_cases", "fin_cases", "contrapose", "contrapose!", "zify", "qify",
    "cases'", "suffices", "apply_fun", "trans", "classical", "unfold_let",
    "filter_upwards", "choose", "replace", "injection", "mono", "apply_rules", "set_option",
    "simp_intro", "norm_num_ext", "wlog", "nontriviality", "by_contra'",
    "omega_nat", "unfold_projs", "delta", "rename", "infer_instance", "exacts",
}
_STRUCT = {
    "intro", "intros", "rintro", "constructor", "left", "right", "exfalso", "by_contra",
    "by_contra!", "by_cases", "induction", "induction'", "cases", "match", "apply", "have",
    "haveI", "let", "letI", "show", "change", "done", "sorry", "admit", "try", "first",
    "repeat", "repeat'", "iterate", "all_goals", "any_goals", "focus", "case", "case'", "next",
    "on_goal", "rcases", "obtain",
}
SIM_TACTICS = {"sim_delay", "sim_hang", "sim_crash", "sim_grow", "sim_garbage", "sim_huge",
               "sim_write", "sim_connect", "sim_fork", "sim_bigfile"}
TACTICS = CLOSERS | _PROGRESS | _STRUCT | SIM_TACTICS
# progress tactics that try to close the goal when they are done (see Ctx._finishes)
_FINISHING = {"rw", "rewrite", "nth_rewrite", "nth_rw", "simp_rw", "use", "exists", "existsi", "gcongr"}
# combinators: not reported by allTactics / infotree
_COMBINATORS = {"try", "first", "repeat", "repeat'", "iterate", "all_goals", "any_goals",
                "focus", "case", "case'", "next", "on_goal"}
_NESTING = _COMBINATORS | {"classical"}

_FAIL_MSG = {
    "linarith": "linarith failed to find a contradiction",
    "nlinarith": "linarith failed to find a contradiction",
    "omega": "omega could not prove the goal",
    "simp": "simp made no progress",
    "simp_all": "simp_all made no progress",
    "simpa": "simp made no progress",
    "norm_num": "norm_num failed to simplify",
    "ring": "ring failed to prove equality",
    "positivity": "failed to prove positivity",
    "aesop": "aesop: failed to prove the goal after exhaustive search.",
    "tauto": "tauto failed to solve some goals.",
    "assumption": "Tactic `assumption` failed",
    "contradiction": "Tactic `contradiction` failed",
    "trivial": "Tactic `trivial` failed",
}

_WORD = re.compile(r"[A-Za-z_][\w'!?]*")
_IDENT = re.compile(r"[^\W\d][\w.'!?₀-₉]*")
_HEAD = re.compile(r"[\s(@]*([^\W\d][\w.'!?₀-₉]*)")
_SORRY = re.compile(r"(?<![\w.'])sorry(?![\w'])")
_TERM_KEYWORDS = {
    "fun", "λ", "match", "if", "then", "else", "let", "have", "show", "from", "by", "do", "calc",
    "Type", "Prop", "Sort", "True", "False", "sorry", "nofun", "nomatch", "with", "at", "this",
    "rfl", "trivial", "id", "absurd", "le_refl", "le_rfl", "lt_irrefl", "inferInstance", "fun_prop",
}
_DIRECTIVE = re.compile(r"--\s*sim:\s*(\w+)\s*(.*?)\s*$")


class TacticError(Exception):
    """A tactic threw (the whole `by` block fails)."""

    def __init__(self, msg: str, s: int, e: int) -> None:
        super().__init__(msg)
        self.msg, self.s, self.e = msg, s, e


class ParseError(Exception):
    """The text does not parse (unknown tactic word, trailing input)."""

    def __init__(self, msg: str, s: int, e: int) -> None:
        super().__init__(msg)
        self.msg, self.s, self.e = msg, s, e


class _Unset(Enum):
    """The default of an argument whose None means something (``Goal.replace(case=None)`` clears the case)."""

    UNSET = "unset"


class Goal:
    """One goal: hypotheses (name, type), target, optional case tag, optional truth override."""

    __slots__ = ("case", "hyps", "target", "truth")

    def __init__(self, hyps: tuple[tuple[str, str], ...], target: str, case: str | None = None,
                 truth: bool | None = None) -> None:
        self.hyps, self.target, self.case, self.truth = hyps, target, case, truth

    def render(self) -> str:
        lines = []
        if self.case:
            lines.append("case " + self.case)
        names: list[str] = []
        cur = ""
        for name, typ in self.hyps:
            if names and typ == cur:
                names.append(name)
                continue
            if names:
                lines.append(" ".join(names) + " : " + cur)
            names, cur = [name], typ
        if names:
            lines.append(" ".join(names) + " : " + cur)
        lines.append("⊢ " + self.target)
        return "\n".join(lines)

    def replace(self, *, target: str | None = None, case: str | _Unset | None = _Unset.UNSET,
                truth: bool | None = None) -> Goal:
        """This goal with ``target`` and ``case`` changed where given; ``truth`` is reset unless given."""
        return Goal(self.hyps, self.target if target is None else target,
                    self.case if case is _Unset.UNSET else case, truth)

    def add_hyp(self, name: str, typ: str) -> Goal:
        hyps = (*(h for h in self.hyps if h[0] != name), (name, typ))
        return Goal(hyps, self.target, self.case, self.truth)

    def to_json(self) -> list:
        return [[list(h) for h in self.hyps], self.target, self.case, self.truth]

    @staticmethod
    def from_json(d: list) -> Goal:
        return Goal(tuple((name, typ) for name, typ in d[0]), d[1], d[2], d[3])


_NO_GOAL = Goal((), "False")


def provable(g: Goal) -> bool:
    if g.truth is not None:
        return g.truth
    for _, t in g.hyps:
        if decide_prop(t) is False:
            return True
    return decide_prop(g.target) is not False


def render_goals(goals: Sequence[Goal]) -> str:
    return "\n\n".join(g.render() for g in goals)


class Decl:
    """A declared constant: kind, type, axioms it depends on, literal value if any, and its signature
    (binders and type with all blanks removed: what `type_of%` compares)."""

    __slots__ = ("axioms", "kind", "signature", "type", "value")

    def __init__(self, kind: str, type: str, axioms: frozenset, value: str | None, signature: str = "") -> None:
        self.kind, self.type, self.axioms, self.value, self.signature = kind, type, axioms, value, signature

    def to_json(self) -> list:
        return [self.kind, self.type, sorted(self.axioms), self.value, self.signature]

    @staticmethod
    def from_json(d: list) -> Decl:
        return Decl(d[0], d[1], frozenset(d[2]), d[3], d[4] if len(d) > 4 else "")


def resolve(names: dict, ns: list, name: str) -> str | None:
    if name.startswith("_root_."):
        name = name[7:]
        return name if name in names else None
    for k in range(len(ns), 0, -1):
        full = ".".join(ns[:k]) + "." + name
        if full in names:
            return full
    return name if name in names else None


# what Ctx.restore needs: message, sorry and tactic counts, axioms, tainted, sorry count
Snapshot = tuple[int, int, int, set[str], bool, int]


class Ctx:
    """Elaboration state of one request."""

    def __init__(self, src: Source, names: dict, tactic_mode: bool, record: bool,
                 directive: Callable[[str, str], tuple[str, str] | None]) -> None:
        self.src = src
        self.m = src.masked
        self.names = names
        self.ns: list[str] = []
        self.variables: dict[str, str] = {}  # `variable` name -> its binder, e.g. "(h : False)"
        self.included: list[str] = []  # names `include`d: their binders join every later declaration's
        self.tactic_mode = tactic_mode
        self.record = record
        self.directive_cb = directive
        self.messages: list[tuple[str, int, int, str]] = []
        self.sorries: list[tuple[Goal, int, int]] = []
        self.roots: list[tuple[Goal, int]] = []
        self.tactics: list = []
        self.axioms: set = set()
        self.tainted = False
        self.sorry_count = 0

    # -- logging
    def log(self, severity: str, msg: str, s: int, e: int) -> None:
        self.messages.append((severity, s, e, msg))

    def error(self, msg: str, s: int, e: int) -> None:
        self.log("error", msg, s, e)
        self.tainted = True

    def add_sorry(self, goal: Goal, s: int, e: int) -> None:
        self.sorries.append((goal, s, e))
        self.sorry_count += 1
        self.tainted = True

    def snapshot(self) -> Snapshot:
        return (len(self.messages), len(self.sorries), len(self.tactics), set(self.axioms),
                self.tainted, self.sorry_count)

    def restore(self, snap: Snapshot) -> None:
        nm, ns, nt, ax, tainted, sc = snap
        del self.messages[nm:]
        del self.sorries[ns:]
        del self.tactics[nt:]
        self.axioms, self.tainted, self.sorry_count = ax, tainted, sc

    def known(self, name: str, goal: Goal) -> bool:
        if name in _TERM_KEYWORDS or "." in name.strip("."):
            return True
        if any(h[0] == name for h in goal.hyps):
            return True
        return resolve(self.names, self.ns, name) is not None

    def directive(self, name: str, arg: str, s: int, e: int) -> None:
        res = self.directive_cb(name, arg)
        if res is not None:
            self.log(res[0], res[1], s, e)

    # -- sequences
    def split_seq(self, s: int, e: int) -> tuple[list[tuple[int, int]], list[int]]:
        """Split a tactic block into its top-level tactics (and the separator offsets)."""
        m = self.m
        r = trim(m, s, e)
        if r is None:
            return [], []
        i = r[0]
        e = r[1]
        col0 = column(m, i)
        pieces: list[tuple[int, int]] = []
        seps: list[int] = []
        start = i
        depth = 0
        nested = self._starts_nested(i, e)
        j = i
        while j < e:
            c = m[j]
            if c in OPEN:
                depth += 1
            elif c in CLOSE:
                depth = max(0, depth - 1)
            elif c == "\n":
                k = j + 1
                while k < e and m[k] in " \t\r":
                    k += 1
                if k < e and m[k] == "\n":
                    j = k
                    continue
                if k >= e:
                    break
                if depth == 0 and k - (j + 1) == col0 and m[k] != "|":
                    p = trim(m, start, j)
                    if p:
                        pieces.append(p)
                        seps.append(k)
                    start = k
                    nested = self._starts_nested(k, e)
                j = k
                continue
            elif c == ";" and depth == 0 and not nested:
                if not (m[j - 1:j] == "<" and m[j + 1:j + 2] == ">"):
                    p = trim(m, start, j)
                    if p:
                        pieces.append(p)
                        seps.append(j)
                    start = j + 1
                    k = j + 1
                    while k < e and m[k].isspace():
                        k += 1
                    nested = self._starts_nested(k, e)
                    j = k
                    continue
            elif depth == 0 and not nested and (
                    (c == "b" and word_at(m, j, "by", e)) or (c == "=" and m.startswith("=>", j))):
                nested = True
            j += 1
        p = trim(m, start, e)
        if p:
            pieces.append(p)
        return pieces, seps

    def _starts_nested(self, k: int, e: int) -> bool:
        m = self.m
        if k >= e:
            return False
        if m[k] == "·" or (m[k] == "." and m[k + 1:k + 2].isspace()):
            return True
        w = _WORD.match(m, k)
        return bool(w and w.group() in _NESTING)

    def check_words(self, pieces: Sequence[tuple[int, int]]) -> None:
        m = self.m
        for s, _e in pieces:
            c = m[s]
            if c in "({·" or (c == "." and m[s + 1:s + 2].isspace()):
                continue
            w = _WORD.match(m, s)
            if w is None:
                raise ParseError("unknown tactic", s, s)
            if w.group() not in TACTICS:
                raise ParseError("unknown tactic", s, w.end())

    def run_seq(self, s: int, e: int, goals: list) -> list:
        pieces, _ = self.split_seq(s, e)
        self.check_words(pieces)
        for ps, pe in pieces:
            goals = self.run_tactic(ps, pe, goals)
        return goals

    def run_by(self, by_s: int, body_s: int, e: int, goal: Goal, root: bool = False) -> None:
        """Elaborate `by <block>` as a term: errors are logged, never propagated."""
        if root:
            self.roots.append((goal, by_s))
        pieces, _ = self.split_seq(body_s, e)
        self.check_words(pieces)
        goals = [goal]
        try:
            for ps, pe in pieces:
                goals = self.run_tactic(ps, pe, goals)
        except TacticError as err:
            self.error(err.msg, err.s, err.e)
            return
        if goals and pieces and self._finishes(*pieces[-1]) and all(provable(g) for g in goals):
            return
        if goals:
            end = pieces[-1][1] if pieces else by_s + 2
            self.error("unsolved goals\n" + render_goals(goals), by_s, end)

    def _finishes(self, s: int, e: int) -> bool:
        """A progress tactic that Lean ends by trying to close the goal (rw's and use's `rfl`, gcongr's
        discharger, simp only's `True`): as the last tactic of a block, it closes what is provable."""
        words = self.m[s:e].split()
        if not words:
            return False
        if words[0] == "simp" and len(words) > 1 and words[1] == "only":
            return "at" not in words
        return words[0] in _FINISHING

    def focused(self, s: int, e: int, goal: Goal, whole: tuple[int, int]) -> None:
        res = self.run_seq(s, e, [goal])
        if res:
            self.error("unsolved goals\n" + render_goals(res), whole[0], whole[1])

    # -- terms
    def elab_term(self, s: int, e: int, goal: Goal, thrown: bool) -> None:
        m = self.m
        r = trim(m, s, e)
        if r is None:
            raise ParseError("expected term", s, s)
        s, e = r
        if word_at(m, s, "by", e):
            self.run_by(s, s + 2, e, goal)
            return
        text = m[s:e]
        hits = list(_SORRY.finditer(text))
        if hits:
            for h in hits:
                self.add_sorry(goal, s + h.start(), s + h.end())
            return
        hm = _HEAD.match(text)
        if hm and not self.known(hm.group(1), goal):
            name = hm.group(1)
            self.error(f"Unknown identifier `{name}`", s + hm.start(1), s + hm.end(1))
            return
        if not provable(goal) and not self._uses_axiom(s, e):
            msg = f"type mismatch\n  {norm_ws(text)}\nis not a proof of\n  {goal.target}"
            if thrown:
                raise TacticError(msg, s, e)
            self.error(msg, s, e)

    # -- tactics
    def run_tactic(self, s: int, e: int, goals: list) -> list:
        m = self.m
        arrows = find_top(m, s, e, "<;>")
        if arrows:
            bounds = [s] + [a + 3 for a in arrows]
            ends = [*arrows, e]
            first = trim(m, bounds[0], ends[0])
            new = self.run_tactic(first[0], first[1], goals[:1]) if first else goals[:1]
            for b, en in zip(bounds[1:], ends[1:], strict=True):
                part = trim(m, b, en)
                if part is None:
                    raise ParseError("expected tactic", b, b)
                acc: list = []
                for g in new:
                    acc += self.run_tactic(part[0], part[1], [g])
                new = acc
            return new + goals[1:]
        c = m[s]
        if c in "({":
            close = match_close(m, s, e)
            if close != e - 1:
                raise ParseError("expected end of input" if close >= 0 else "unexpected end of input",
                                 close + 1 if close >= 0 else e, e)
            if c == "(":
                return self.run_seq(s + 1, close, goals)
            if not goals:
                raise TacticError("no goals to be proved", s, e)
            self.focused(s + 1, close, goals[0], (s, e))
            return goals[1:]
        if c == "·" or (c == "." and m[s + 1:s + 2].isspace()):
            if not goals:
                raise TacticError("no goals to be proved", s, e)
            self.focused(s + 1, e, goals[0], (s, e))
            return goals[1:]
        w = _WORD.match(m, s)
        if w is None or w.group() not in TACTICS:
            raise ParseError("unknown tactic", s, w.end() if w else s)
        word = w.group()
        arg = w.end()
        if not goals and word not in ("skip", "done", "try", "all_goals", "any_goals", "repeat",
                                      "repeat'", "iterate") and word not in SIM_TACTICS:
            raise TacticError("no goals to be proved", s, e)
        idx = -1
        if self.record and word not in _COMBINATORS:
            idx = len(self.tactics)
            self.tactics.append([s, e, word, list(goals), None])
        out = self._dispatch(word, s, arg, e, goals)
        if idx >= 0:
            self.tactics[idx][4] = list(out)
        return out

    def _dispatch(self, word: str, s: int, a: int, e: int, goals: list[Goal]) -> list[Goal]:
        m = self.m
        argtext = m[a:e].strip()
        # run_tactic lets only goal-free tactics (skip, done, try, the combinators) through without a goal,
        # and they never read ``g``
        g = goals[0] if goals else _NO_GOAL
        rest = goals[1:]
        if word in SIM_TACTICS:
            self.directive(word[4:], argtext, s, e)
            return goals
        if word == "exact":
            self.elab_term(a, e, g, thrown=True)
            self._ref_axioms(a, e)
            return rest
        if word in ("sorry", "admit"):
            self.add_sorry(g, s, e)
            return rest
        if word == "calc":
            return self._calc(g, a, e, rest)
        if (word == "simp" and re.match(r"only\b", argtext)) or (
                word in CLOSERS and find_top(m, a, e, "at", words=True)):
            return goals
        if word in CLOSERS:
            if not provable(g):
                raise TacticError(self._fail(word, g), s, e)
            if word in _CLOSE_CLASSICAL:
                self.axioms |= CLASSICAL
            elif word in _CLOSE_NATIVE:
                self.axioms.add("Lean.ofReduceBool")
            self._ref_axioms(a, e)
            return rest
        if word in _PROGRESS:
            self._ref_axioms(a, e)
            return goals
        if word in ("have", "haveI", "let", "letI"):
            return self._have(g, a, e, rest)
        if word in ("intro", "intros", "rintro"):
            names = _IDENT.findall(argtext) if word != "intros" or argtext else []
            if word == "intros" and not names:
                return [self._intro_all(g), *rest]
            if not names:
                names = [None]
            for n in names:
                g = _intro(g, n)
            return [g, *rest]
        if word == "constructor":
            return _split_goal(g) + rest
        if word in ("left", "right"):
            parts = top_split(g.target, "∨")
            if parts:
                return [g.replace(target=parts[0 if word == "left" else 1], case="h"), *rest]
            return goals
        if word == "exfalso":
            return [g.replace(target="False"), *rest]
        if word in ("by_contra", "by_contra!"):
            name = argtext.split()[0] if argtext else "h✝"
            return [g.add_hyp(name, "¬" + _paren(g.target)).replace(target="False", truth=provable(g)),
                    *rest]
        if word == "by_cases":
            if ":" in argtext:
                name, prop = argtext.split(":", 1)
                name = name.strip() or "h✝"
            else:
                name, prop = "h✝", argtext
            prop = pretty(prop)
            return [g.add_hyp(name, prop).replace(case="pos"),
                    g.add_hyp(name, "¬" + _paren(prop)).replace(case="neg"), *rest]
        if word in ("rcases", "obtain"):
            return self._rcases(word, g, a, e, rest)
        if word in ("induction", "induction'", "cases", "match"):
            return self._cases(word, g, a, e, rest, (s, e))
        if word == "apply":
            return self._apply(g, a, e, rest)
        if word in ("show", "change"):
            if not argtext:
                raise ParseError("expected term", a, a)
            return [g.replace(target=pretty(argtext), truth=None), *rest]
        if word == "done":
            if goals:
                raise TacticError("unsolved goals\n" + render_goals(goals), s, e)
            return goals
        if word == "try":
            snap = self.snapshot()
            try:
                return self.run_seq(a, e, goals)
            except TacticError:
                self.restore(snap)
                return goals
        if word == "first":
            alts = find_top(m, a, e, "|")
            bounds = list(zip([p + 1 for p in alts], [*alts[1:], e], strict=True))
            err: TacticError | None = None
            for bs, be in bounds:
                snap = self.snapshot()
                try:
                    return self.run_seq(bs, be, goals)
                except TacticError as ex:
                    self.restore(snap)
                    err = ex
            raise err or ParseError("expected '|'", a, a)
        if word in ("repeat", "repeat'", "iterate"):
            n = 64
            body = a
            if word == "iterate":
                nm = re.match(r"\s*(\d+)", m[a:e])
                if nm:
                    n = int(nm.group(1))
                    body = a + nm.end()
            for _ in range(n):
                if not goals:
                    break
                snap = self.snapshot()
                try:
                    new = self.run_seq(body, e, goals)
                except TacticError:
                    self.restore(snap)
                    break
                if [x.render() for x in new] == [x.render() for x in goals]:
                    goals = new
                    break
                goals = new
            return goals
        if word in ("all_goals", "any_goals"):
            out: list = []
            ok = False
            last: TacticError | None = None
            for x in goals:
                snap = self.snapshot()
                try:
                    out += self.run_seq(a, e, [x])
                    ok = True
                except TacticError as ex:
                    if word == "all_goals":
                        raise
                    self.restore(snap)
                    out.append(x)
                    last = ex
            if word == "any_goals" and not ok and last is not None:
                raise last
            return out
        if word == "focus":
            self.focused(a, e, g, (s, e))
            return rest
        if word in ("case", "case'", "next", "on_goal"):
            arrow = find_top(m, a, e, "=>")
            if not arrow:
                raise ParseError("expected '=>'", e, e)
            head = m[a:arrow[0]].split()
            pick = 0
            if word in ("case", "case'"):
                tag = head[0] if head else "_"
                if tag != "_":
                    pick = next((i for i, x in enumerate(goals) if x.case == tag), -1)
                    if pick < 0:
                        raise TacticError(f"Case tag `{tag}` not found.\n\nNote: There are no "
                                          "cases to select." if all(x.case is None for x in goals)
                                          else f"Case tag `{tag}` not found.", s, e)
            elif word == "on_goal":
                try:
                    pick = int(head[0]) - 1 if head else 0
                except ValueError:
                    raise ParseError("expected numeral", a, a) from None
                if not 0 <= pick < len(goals):
                    raise TacticError("not enough goals", s, e)
            chosen = goals[pick]
            others = goals[:pick] + goals[pick + 1:]
            self.focused(arrow[0] + 2, e, chosen, (s, e))
            return others
        return goals  # pragma: no cover - every word in TACTICS is handled above

    def _fail(self, word: str, g: Goal) -> str:
        base = word.rstrip("?!")
        if base == "decide":
            return f"Tactic `decide` proved that the proposition\n  {g.target}\nis false"
        if base == "native_decide":
            return f"Tactic `native_decide` evaluated that the proposition\n  {g.target}\nis false"
        if base == "rfl":
            return ("Tactic `rfl` failed: the left-hand side and the right-hand side are not "
                    "definitionally equal\n\n" + g.render())
        if base == "exact":
            return "`exact?` could not close the goal."
        return _FAIL_MSG.get(base, f"{base} failed") + ("\n" + g.render() if base in
                                                           ("linarith", "nlinarith") else "")

    def _uses_axiom(self, s: int, e: int) -> bool:
        for idm in _IDENT.finditer(self.m, s, e):
            for cand in (idm.group(), idm.group().rsplit(".", 1)[0]):
                full = resolve(self.names, self.ns, cand)
                if full is not None and self.names[full].kind == "axiom":
                    return True
        return False

    def _ref_axioms(self, s: int, e: int) -> None:
        for idm in _IDENT.finditer(self.m, s, e):
            name = idm.group()
            full = resolve(self.names, self.ns, name)
            if full is None and "." in name:
                full = resolve(self.names, self.ns, name.rsplit(".", 1)[0])
            if full is not None:
                self.axioms |= self.names[full].axioms

    def _have(self, g: Goal, a: int, e: int, rest: list) -> list:
        m = self.m
        assign = find_top(m, a, e, ":=")
        head_end = assign[0] if assign else e
        head = m[a:head_end]
        colon = find_top(head, 0, len(head), ":")
        if colon:
            name_part, typ = head[:colon[0]].strip(), pretty(head[colon[0] + 1:])
        else:
            name_part, typ = head.strip(), None
        name = name_part.split()[0] if name_part.split() else "this"
        if not assign:
            if typ is None:
                raise ParseError("expected ':=' or ':'", e, e)
            return [g.replace(target=typ, case=None), g.add_hyp(name, typ), *rest]
        ps = assign[0] + 2
        if typ is None:
            val = m[ps:e].strip()
            typ = number_type(val) if eval_expr(val) is not None else None
            typ = typ or "?"
        self.elab_term(ps, e, g.replace(target=typ, case=None), thrown=False)
        self._ref_axioms(ps, e)
        return [g.add_hyp(name, typ), *rest]

    def _intro_all(self, g: Goal) -> Goal:
        for _ in range(32):
            new = _intro(g, None)
            if new is g:
                break
            g = new
        return g

    def _apply(self, g: Goal, a: int, e: int, rest: list) -> list:
        text = norm_ws(self.m[a:e])
        hm = _HEAD.match(text)
        if hm and not self.known(hm.group(1), g):
            raise TacticError(f"Unknown identifier `{hm.group(1)}`", a, e)
        self._ref_axioms(a, e)
        if text in ("And.intro", "Iff.intro", "⟨_, _⟩"):
            return _split_goal(g) + rest
        hyp = next((t for n, t in g.hyps if n == text), None)
        if hyp is not None:
            if hyp == g.target:
                return rest
            premises = []
            cur = hyp
            while True:
                parts = top_split(cur, "→")
                if not parts:
                    break
                premises.append(parts[0])
                cur = parts[1]
                if cur == g.target:
                    return [g.replace(target=p) for p in premises] + rest
        return [g, *rest]

    def _cases(self, word: str, g: Goal, a: int, e: int, rest: list, whole: tuple[int, int]) -> list:
        m = self.m
        withs = find_top(m, a, e, "with", words=True)
        target_end = withs[0] if withs else e
        var = m[a:target_end].strip()
        alts_text = withs and m[withs[0] + 4:e].strip().startswith("|")
        if word == "match" and not alts_text:
            raise ParseError("expected 'with'", e, e)
        vtype = next((t for n, t in g.hyps if n == var), None)
        nat = vtype in ("ℕ", "Nat")
        if not alts_text:
            if word.startswith("induction") and nat:
                return _nat_cases(g, var, "n✝", "a✝", True) + rest
            if word == "cases" and nat:
                return _nat_cases(g, var, "n✝", None, False) + rest
            return [g.replace(case=g.case, truth=g.truth), *rest]
        bars = [p for p in find_top(m, withs[0] + 4, e, "|") if _line_lead(m, p, withs[0] + 4)]
        for i, p in enumerate(bars):
            end = bars[i + 1] if i + 1 < len(bars) else e
            arrow = find_top(m, p + 1, end, "=>")
            if not arrow:
                raise ParseError("expected '=>'", end, end)
            pat = m[p + 1:arrow[0]].split()
            tag = pat[0] if pat else "_"
            tag = tag.split(".")[-1]
            sub = g.replace(case=tag, truth=g.truth)
            if nat and word != "match" and tag in ("zero", "succ"):
                both = _nat_cases(g, var, pat[1] if len(pat) > 1 else "n✝",
                                  (pat[2] if len(pat) > 2 else "a✝") if word.startswith("induction") else None,
                                  word.startswith("induction"))
                sub = both[0] if tag == "zero" else both[1]
            self.focused(arrow[0] + 2, end, sub, (p, end))
        return rest

    def _rcases(self, word: str, g: Goal, a: int, e: int, rest: list) -> list:
        m = self.m
        key = "with" if word == "rcases" else ":="
        hits = find_top(m, a, e, key, words=(key == "with"))
        if word == "rcases":
            var = m[a:hits[0]].strip() if hits else m[a:e].strip()
            pat = m[hits[0] + 4:e].strip() if hits else ""
        else:
            var = m[hits[0] + 2:e].strip() if hits else ""
            pat = m[a:hits[0]].strip() if hits else m[a:e].strip()
            if ":" in pat and not pat.startswith(("⟨", "(")):
                pat = pat.split(":", 1)[0].strip()
        self._ref_axioms(a, e)
        if pat[:1] in "(⟨" and pat and match_close(pat, 0, len(pat)) == len(pat) - 1:
            inner = pat[1:-1]
            if pat[0] == "(" or "|" in inner:
                pat = inner.strip()
        alts = [x.strip() for x in _split_bars(pat)]
        vtype = next((t for n, t in g.hyps if n == var), None)
        if vtype in ("ℕ", "Nat") and len(alts) == 2:
            name = _IDENT.findall(alts[1])
            return _nat_cases(g, var, name[0] if name else "n✝", None, False) + rest
        parts = _split_all(vtype or "", "∨", len(alts)) if len(alts) > 1 else [vtype or "?"]
        tags = ([None] if len(alts) == 1 else ["inl", "inr"] if len(alts) == 2
                else [f"h{i + 1}" for i in range(len(alts))])
        out = []
        for alt, typ, tag in zip(alts, parts, tags, strict=True):
            names = [n for n in _IDENT.findall(alt) if n != "_"]
            sub = Goal(tuple(h for h in g.hyps if h[0] != var or not names), g.target,
                       tag or g.case, g.truth)
            types = _split_all(typ, "∧", len(names)) if names else []
            for n, t in zip(names, types, strict=True):
                sub = sub.add_hyp(n, t)
            out.append(sub)
        return out + rest

    def _calc(self, g: Goal, a: int, e: int, rest: list) -> list:
        m = self.m
        for lm in re.finditer(r"[^\n]+", m[a:e]):
            line = lm.group()
            assign = line.find(":=")
            if assign < 0:
                continue
            rel = line[:assign].strip()
            proof_s = a + lm.start() + assign + 2
            proof_e = a + lm.end()
            step_goal = Goal(g.hyps, pretty(rel)) if not rel.startswith("_") else Goal(g.hyps, rel)
            self.elab_term(proof_s, proof_e, step_goal, thrown=False)
        self._ref_axioms(a, e)
        return rest


def _split_all(text: str, op: str, n: int) -> list[str]:
    """Split text at the first n-1 depth-0 `op`s; pad with "?" when it has fewer parts."""
    parts: list[str] = []
    cur = text
    while len(parts) < n - 1:
        sp = top_split(cur, op)
        if sp is None:
            break
        parts.append(sp[0])
        cur = sp[1]
    parts.append(cur or "?")
    if len(parts) < n:
        parts = ["?"] * n
    return parts


def _split_bars(pat: str) -> list[str]:
    cuts = find_top(pat, 0, len(pat), "|")
    bounds = [0] + [c + 1 for c in cuts]
    ends = [*cuts, len(pat)]
    return [pat[b:x] for b, x in zip(bounds, ends, strict=True)]


def _line_lead(m: str, p: int, floor: int) -> bool:
    k = p - 1
    while k >= floor and m[k] in " \t":
        k -= 1
    return k < floor or m[k] == "\n"


def _paren(t: str) -> str:
    return t if re.fullmatch(r"[\w.'₀-₉]+", t) else "(" + t + ")"


def _subst(text: str, var: str, val: str) -> str:
    return re.sub(r"(?<![\w.'])" + re.escape(var) + r"(?![\w'])", val, text)


def _nat_cases(g: Goal, var: str, n: str, ih: str | None, induction: bool) -> list:
    hyps = tuple(h for h in g.hyps if h[0] != var)
    zero = Goal(tuple((x, _subst(t, var, "0")) for x, t in hyps), _subst(g.target, var, "0"),
                "zero")
    succ_hyps = (*((x, _subst(t, var, n)) for x, t in hyps), (n, "ℕ"))
    if induction and ih:
        succ_hyps += ((ih, _subst(g.target, var, n)),)
    succ = Goal(succ_hyps, _subst(g.target, var, n + " + 1"), "succ")
    return [zero, succ]


def _split_goal(g: Goal) -> list:
    parts = top_split(g.target, "∧")
    if parts:
        return [g.replace(target=parts[0], case="left"), g.replace(target=parts[1], case="right")]
    parts = top_split(g.target, "↔")
    if parts:
        return [g.replace(target=f"{parts[0]} → {parts[1]}", case="mp"),
                g.replace(target=f"{parts[1]} → {parts[0]}", case="mpr")]
    return [g]


def _intro(g: Goal, name: str | None) -> Goal:
    t = g.target.strip()
    if t.startswith(("∀", "forall ")):
        body_i = find_top(t, 0, len(t), ",")
        if body_i:
            binders = t[1 if t.startswith("∀") else 6:body_i[0]].strip()
            body = t[body_i[0] + 1:].strip()
            groups = re.findall(r"[(\[{⦃]([^()\[\]{}⦃⦄]*)[)\]}⦄]", binders) or [binders]
            flat: list[tuple[str, str]] = []
            for grp in groups:
                if ":" in grp:
                    vs, ty = grp.split(":", 1)
                    flat += [(v, ty.strip()) for v in vs.split()]
                else:
                    flat += [(v, "?") for v in grp.split()]
            if not flat:
                return g
            var, ty = flat[0]
            nm = name or var + "✝"
            body_rest = body
            if len(flat) > 1:
                body_rest = "∀ " + " ".join(f"({v} : {t2})" for v, t2 in flat[1:]) + ", " + body
            new_t = _subst(body_rest, var, nm) if nm != var else body_rest
            return g.add_hyp(nm, ty).replace(target=new_t)
    if t.startswith("¬"):
        inner = t[1:].strip()
        if inner.startswith("(") and match_close(inner, 0, len(inner)) == len(inner) - 1:
            inner = inner[1:-1].strip()
        nm = name or "a✝"
        return g.add_hyp(nm, inner).replace(target="False")
    parts = top_split(t, "→")
    if parts:
        nm = name or "a✝"
        return g.add_hyp(nm, parts[0]).replace(target=parts[1])
    return g


# ----------------------------------------------------------------------------- commands

_DECL = re.compile(
    r"((?:@\[[^\]]*\]\s*)?(?:(?:private|protected|noncomputable|partial|unsafe|nonrec|public|"
    r"scoped|local)\s+)*)(theorem|lemma|example|def|abbrev|instance|axiom|opaque)(?![\w'])"
)
PROOF_KINDS = ("theorem", "lemma", "example")
_SILENT = {
    "open", "set_option", "variable", "universe", "attribute", "export", "local", "macro",
    "syntax", "notation", "infix", "infixl", "infixr", "prefix", "postfix", "macro_rules",
    "elab", "mutual", "deriving", "initialize", "section", "noncomputable", "#guard",
    "#reduce", "#synth", "#help", "omit", "include", "scoped",
}
_TYPE_DECLS = ("structure", "inductive", "class")
_CMD_KEYWORDS = {"sorry", "by", "at", "with", "fun", "have", "show", "from", "then", "else",
                 "do", "calc", "if", "match", "let", "where"}


def header_imports(m: str) -> tuple[list[tuple[int, int, str]], int]:
    """Parse leading header lines; return ([(start, end, module)], body offset)."""
    mods: list[tuple[int, int, str]] = []
    pos = 0
    n = len(m)
    while pos < n:
        end = m.find("\n", pos)
        if end < 0:
            end = n
        line = m[pos:end]
        st = line.strip()
        if not st or st in ("prelude", "module"):
            pos = end + 1
            continue
        hm = re.match(r"\s*(?:public\s+)?(?:meta\s+)?import\s+(.+)$", line)
        if hm is None or not re.fullmatch(r"[\w.«»'\s]+", hm.group(1)):
            break
        mods.extend((pos, end, mod) for mod in hm.group(1).split())
        pos = end + 1
    return mods, min(pos, n)


def command_starts(m: str, s: int) -> list[int]:
    r = trim(m, s, len(m))
    if r is None:
        return []
    return [r[0]] + [r[0] + lm.end() for lm in re.finditer(r"\n(?=[^\s|)\]}⟩,.])", m[r[0]:])]


def directives_by_chunk(src: Source, chunks: list[tuple[int, int, int]]) -> tuple[dict, list]:
    """Map chunk index -> [(name, arg, s, e)]; directives after the last chunk are returned apart."""
    out: dict[int, list] = {}
    tail: list = []
    for s, e, text in src.comments:
        dm = _DIRECTIVE.match(text)
        if dm is None:
            continue
        item = (dm.group(1), dm.group(2), s, e)
        for i, (cs, _ce, content_end) in enumerate(chunks):
            if s < cs or (cs <= s < content_end):
                out.setdefault(i, []).append(item)
                break
        else:
            tail.append(item)
    return out, tail


def binders_to_hyps(m: str, s: int, e: int) -> tuple[list[tuple[str, str]], int]:
    """Parse bracketed binders from s; return (hyps, offset after them)."""
    hyps: list[tuple[str, str]] = []
    i = s
    while True:
        while i < e and m[i].isspace():
            i += 1
        if i >= e or m[i] not in "([{⦃":
            return hyps, i
        close = match_close(m, i, e)
        if close < 0:
            return hyps, i
        inner = m[i + 1:close]
        colon = find_top(inner, 0, len(inner), ":")
        if colon:
            names = inner[:colon[0]].split()
            typ = pretty(inner[colon[0] + 1:])
            hyps += [(nm, typ) for nm in names]
        elif m[i] == "[":
            hyps.append(("inst✝", pretty(inner)))
        else:
            hyps += [(nm, "?") for nm in inner.split()]
        i = close + 1
