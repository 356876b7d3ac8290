"""The simulated REPL process: framing, request dispatch, ids, pickles, costs and faults."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import BinaryIO, NoReturn

from .commands import elaborate
from .semantics import Ctx, Decl, Goal, ParseError, TacticError
from .text import Source

PICKLE_FORMAT = "leanstep-sim-pickle/1"


class Fatal(Exception):
    """An uncaught exception in the real REPL: message on stderr, non-zero exit."""


def _float_env(name: str) -> float:
    v = os.environ.get(name, "")
    try:
        return max(0.0, float(v)) if v else 0.0
    except ValueError:
        return 0.0


def tactic_seconds(tactic: str, median: float, sigma: float) -> float:
    """What one tactic request costs: ``median`` seconds, or with ``sigma`` > 0 a lognormal draw of that
    median and log-sd, seeded by the tactic's text (the same tactic costs the same in every process)."""
    if median <= 0 or sigma <= 0:
        return median
    seed = int.from_bytes(hashlib.sha256(tactic.encode()).digest()[:8], "big")
    return random.Random(seed).lognormvariate(math.log(median), sigma)


class Env:
    __slots__ = ("imports", "names")

    def __init__(self, names: dict, imports: tuple) -> None:
        self.names, self.imports = names, imports


class ProofState:
    __slots__ = ("env", "goals", "tainted")

    def __init__(self, goals: tuple, env: Env, tainted: bool) -> None:
        self.goals, self.env, self.tainted = goals, env, tainted


# request shapes in the real dispatch order: (kind, {field: (type, required)})
_NAT, _STR, _BOOL = "nat", "str", "bool"
_CMD_OPTS = {"env": (_NAT, False), "allTactics": (_BOOL, False), "rootGoals": (_BOOL, False),
             "infotree": (_STR, False)}
SHAPES = (
    ("tactic", {"proofState": (_NAT, True), "tactic": (_STR, True)}),
    ("pickle_env", {"env": (_NAT, True), "pickleTo": (_STR, True)}),
    ("unpickle_env", {"unpickleEnvFrom": (_STR, True)}),
    ("pickle_ps", {"proofState": (_NAT, True), "pickleTo": (_STR, True)}),
    ("unpickle_ps", {"unpickleProofStateFrom": (_STR, True), "env": (_NAT, False)}),
    ("cmd", dict(_CMD_OPTS, cmd=(_STR, True))),
    ("path", dict(_CMD_OPTS, path=(_STR, True))),
)


def _has_type(v: object, t: str) -> bool:
    if t == _NAT:
        return type(v) is int and v >= 0
    if t == _STR:
        return isinstance(v, str)
    return isinstance(v, bool)


def classify(obj: object) -> str | None:
    """Name of the first request shape the JSON value decodes as, or None."""
    if not isinstance(obj, dict):
        return None
    for kind, fields in SHAPES:
        for key, (t, required) in fields.items():
            v = obj.get(key)
            if v is None:
                if required:
                    break
            elif not _has_type(v, t):
                break
        else:
            return kind
    return None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"unexpected token {name}")


def _msg(src: Source | None, sev: str, s: int, e: int, data: str) -> dict:
    if src is None:
        p = q = {"line": 0, "column": 0}
    else:
        p, q = src.pos(s), src.pos(e)
    return {"severity": sev, "pos": p, "endPos": q, "data": data.strip()}


class Repl:
    """All per-process state; `handle` answers one decoded request."""

    def __init__(self) -> None:
        self.envs: list[Env] = []
        self.states: list[ProofState] = []
        self.import_s = _float_env("LEANSTEP_SIM_IMPORT_SECONDS")
        self.cmd_s = _float_env("LEANSTEP_SIM_CMD_SECONDS")
        self.tactic_s = _float_env("LEANSTEP_SIM_TACTIC_SECONDS")
        self.tactic_sigma = _float_env("LEANSTEP_SIM_TACTIC_SIGMA")
        self.proof_s = _float_env("LEANSTEP_SIM_PROOF_SECONDS")
        self.mem_per_cmd = _float_env("LEANSTEP_SIM_MEM_PER_CMD_MB")
        try:
            self.crash_after = int(os.environ.get("LEANSTEP_SIM_CRASH_AFTER", "0") or 0)
        except ValueError:
            self.crash_after = 0
        self.count = 0
        self.hog: list[bytes] = []
        self.garbage = False
        self.huge = 0

    # ------------------------------------------------------------------ faults
    def directive(self, name: str, arg: str) -> tuple[str, str] | None:
        from . import faults
        return faults.run(self, name, arg)

    def grow(self, mb: float) -> None:
        n = int(mb * 1024 * 1024)
        if n > 0:
            self.hog.append(b"\x5a" * n)

    # ------------------------------------------------------------------ ids
    def new_env(self, env: Env) -> int:
        self.envs.append(env)
        return len(self.envs) - 1

    def new_state(self, st: ProofState) -> int:
        self.states.append(st)
        return len(self.states) - 1

    def _env(self, i: int | None) -> Env | None:
        return self.envs[i] if i is not None and i < len(self.envs) else None

    # ------------------------------------------------------------------ dispatch
    def handle(self, kind: str, req: dict) -> dict:
        return getattr(self, "do_" + kind)(req)

    def do_cmd(self, req: dict) -> dict:
        return self._run_text(req["cmd"], req)

    def do_path(self, req: dict) -> dict:
        path = req["path"]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            return {"message": f"{reason} (error code: {e.errno or 0})\n  file: {path}"}
        except UnicodeDecodeError as e:
            return {"message": f"invalid UTF-8 in file {path}: {e}"}
        return self._run_text(text, req)

    def _run_text(self, text: str, req: dict) -> dict:
        env_id = req.get("env")
        base: Env | None = None
        if env_id is not None:
            base = self._env(env_id)
            if base is None:
                return {"message": "Unknown environment."}
        if self.cmd_s:
            time.sleep(self.cmd_s)
        if self.mem_per_cmd:
            self.grow(self.mem_per_cmd)
        src = Source(text)
        infotree = req.get("infotree")
        want_tree = infotree in ("full", "tactics", "original", "substantive")
        all_tactics = bool(req.get("allTactics"))
        root_goals = bool(req.get("rootGoals"))
        ctx, imports = elaborate(src, base.names if base else None, base is None,
                                 all_tactics or want_tree, self.directive, self._proof_cost)
        if base is None and imports and self.import_s:
            time.sleep(self.import_s)
        before = base if base is not None else Env({}, tuple(imports))
        names = ctx.names
        new_env = Env(names, base.imports if base is not None else tuple(imports))
        resp: dict = {}
        tactics = []
        sorries = []
        for goal, s, e in ctx.sorries:
            sid = self.new_state(ProofState((goal,), before, False))
            sorries.append({"proofState": sid, "pos": src.pos(s), "goal": goal.render(),
                            "endPos": src.pos(e)})
        if root_goals:
            for goal, s in ctx.roots:
                sid = self.new_state(ProofState((goal,), before, False))
                p = src.pos(s)
                sorries.append({"proofState": sid, "pos": p, "goal": goal.render(), "endPos": p})
        records = [r for r in ctx.tactics if r[4] is not None] if (all_tactics or want_tree) else []
        if all_tactics:
            for s, e, _word, gb, _ga in records:
                sid = self.new_state(ProofState(tuple(gb), before, False))
                tactics.append({"usedConstants": [], "tactic": src.masked[s:e].strip(),
                                "proofState": sid, "pos": src.pos(s),
                                "goals": "\n\n".join(g.render() for g in gb) or "no goals",
                                "endPos": src.pos(e)})
        if tactics:
            resp["tactics"] = tactics
        if sorries:
            resp["sorries"] = sorries
        if ctx.messages:
            resp["messages"] = [_msg(src, sev, s, e, d) for sev, s, e, d in ctx.messages]
        if want_tree and records:
            resp["infotree"] = _infotree(src, records)
        resp["env"] = self.new_env(new_env)
        return resp

    def _proof_cost(self) -> None:
        if self.proof_s:
            time.sleep(self.proof_s)

    def do_tactic(self, req: dict) -> dict:
        sid = req["proofState"]
        if sid >= len(self.states):
            return {"message": "Unknown proof state."}
        if self.tactic_s:
            time.sleep(tactic_seconds(str(req["tactic"]), self.tactic_s, self.tactic_sigma))
        st = self.states[sid]
        src = Source(req["tactic"])
        ctx = Ctx(src, st.env.names, tactic_mode=True, record=False, directive=self.directive)
        try:
            pieces, seps = ctx.split_seq(0, len(src.masked))
            if not pieces:
                raise ParseError("unexpected end of input", len(src.masked), len(src.masked))
            if len(pieces) > 1:
                raise ParseError("expected end of input", seps[0], seps[0])
            ctx.check_words(pieces)
            goals = ctx.run_tactic(pieces[0][0], pieces[0][1], list(st.goals))
        except ParseError as err:
            line, col = src.line_col(err.s)
            if err.msg == "unknown tactic":
                col += 1
            return {"message": f"Lean error:\n<input>:{line}:{col}: {err.msg}"}
        except TacticError as err:
            return {"message": "Lean error:\n" + err.msg}
        resp: dict = {}
        sorries = []
        for goal, _s, _e in ctx.sorries:
            k = self.new_state(ProofState((goal,), st.env, False))
            sorries.append({"proofState": k, "goal": goal.render()})
        tainted = st.tainted or ctx.tainted
        new_id = self.new_state(ProofState(tuple(goals), st.env, tainted))
        if sorries:
            resp["sorries"] = sorries
        resp["proofStatus"] = _status(goals, tainted)
        resp["proofState"] = new_id
        if ctx.messages:
            resp["messages"] = [_msg(None, sev, 0, 0, d) for sev, _s, _e, d in ctx.messages]
        resp["goals"] = [g.render() for g in goals]
        return resp

    def _state_response(self, st: ProofState) -> dict:
        new_id = self.new_state(st)
        return {"proofStatus": _status(st.goals, st.tainted), "proofState": new_id,
                "goals": [g.render() for g in st.goals]}

    def do_pickle_env(self, req: dict) -> dict:
        env = self._env(req["env"])
        if env is None:
            return {"message": "Unknown environment."}
        _write_pickle(req["pickleTo"], {
            "format": PICKLE_FORMAT, "kind": "env", "imports": list(env.imports),
            "names": {k: d.to_json() for k, d in env.names.items()}})
        return {"env": req["env"]}

    def do_unpickle_env(self, req: dict) -> dict:
        data = _read_pickle(req["unpickleEnvFrom"], "env")
        if data["imports"] and self.import_s:
            time.sleep(self.import_s)
        names = {k: Decl.from_json(v) for k, v in data["names"].items()}
        return {"env": self.new_env(Env(names, tuple(data["imports"])))}

    def do_pickle_ps(self, req: dict) -> dict:
        sid = req["proofState"]
        if sid >= len(self.states):
            return {"message": "Unknown proof State."}
        st = self.states[sid]
        _write_pickle(req["pickleTo"], {
            "format": PICKLE_FORMAT, "kind": "proofState", "imports": list(st.env.imports),
            "names": {k: d.to_json() for k, d in st.env.names.items()},
            "goals": [g.to_json() for g in st.goals], "tainted": st.tainted})
        return self._state_response(ProofState(st.goals, st.env, st.tainted))

    def do_unpickle_ps(self, req: dict) -> dict:
        env_id = req.get("env")
        base = None
        if env_id is not None:
            base = self._env(env_id)
            if base is None:
                return {"message": "Unknown environment."}
        data = _read_pickle(req["unpickleProofStateFrom"], "proofState")
        names = {k: Decl.from_json(v) for k, v in data["names"].items()}
        if base is not None:
            names = dict(base.names, **names)
        elif data["imports"] and self.import_s:
            time.sleep(self.import_s)
        env = Env(names, tuple(data["imports"]))
        goals = tuple(Goal.from_json(g) for g in data["goals"])
        return self._state_response(ProofState(goals, env, bool(data.get("tainted"))))


def _status(goals: Sequence[Goal], tainted: bool) -> str:
    if goals:
        return "Incomplete: open goals remain"
    if tainted:
        return "Incomplete: contains sorry"
    return "Completed"


def _write_pickle(path: str, data: dict) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    except OSError as e:
        raise Fatal(f"{e.strerror or e} (error code: {e.errno or 0})\n  file: {path}") from None


def _read_pickle(path: str, kind: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise Fatal(f"{e.strerror or e} (error code: {e.errno or 0})\n  file: {path}") from None
    except ValueError:
        raise Fatal(f"failed to read file '{path}', invalid header") from None
    if not isinstance(data, dict) or data.get("format") != PICKLE_FORMAT or data.get("kind") != kind:
        raise Fatal(f"failed to read file '{path}', invalid header")
    return data


def _infotree(src: Source, records: list[list]) -> list:
    """TacticInfo nodes, nested by source range, for records ``[start, end, tactic, goals before, goals after]``."""
    roots: list = []
    stack: list = []
    for s, e, word, gb, ga in records:
        node = {"node": {"stx": {"range": {"synthetic": False, "start": src.pos(s),
                                           "finish": src.pos(e)},
                                 "pp": src.masked[s:e].strip(),
                                 "kind": "Lean.Parser.Tactic." + word,
                                 "argKinds": [word]},
                         "name": "Lean.Parser.Tactic." + word,
                         "goalsBefore": [g.render() for g in gb],
                         "goalsAfter": [g.render() for g in ga]},
                "kind": "TacticInfo", "children": []}
        while stack and not (stack[-1][0] <= s and e <= stack[-1][1]):
            stack.pop()
        (stack[-1][2]["children"] if stack else roots).append(node)
        stack.append((s, e, node))
    return roots


# ---------------------------------------------------------------------- I/O loop

def _encode(resp: dict, single_line: bool) -> bytes:
    if single_line:
        text = json.dumps(resp, ensure_ascii=False)
    else:
        items = []
        for k, v in resp.items():
            if isinstance(v, list) and len(v) > 1:
                val = "[" + ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in v) + "]"
            else:
                val = json.dumps(v, ensure_ascii=False)
            items.append(f'"{k}":{chr(10) + " " if len(val) > 60 else " "}{val}')
        text = "{" + ",\n ".join(items) + "}"
    return (text + "\n\n").encode("utf-8")


def read_query(inp: BinaryIO) -> str:
    """One request as the real REPL assembles it: trimmed lines up to a blank line."""
    parts: list[str] = []
    while True:
        raw = inp.readline()
        if not raw:
            return "".join(parts)
        line = raw.decode("utf-8", "replace")
        if line.strip(" \t\r\n") == "":
            return "".join(parts) + line
        parts.append(line.rstrip(" \t\r\n"))


def _die(msg: str) -> NoReturn:
    try:
        sys.stderr.write("uncaught exception: " + msg + "\n")
        sys.stderr.flush()
    finally:
        os._exit(1)


def main() -> int:
    try:
        return _loop()
    except BrokenPipeError:  # the client went away: die quietly, as after SIGPIPE
        os._exit(1)


def _loop() -> int:
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    repl = Repl()
    while True:
        query = read_query(inp)
        if query == "":
            return 0
        if query.startswith(("#", "--")):
            continue
        repl.count += 1
        if repl.crash_after and repl.count == repl.crash_after:
            from . import faults
            faults.crash(f"LEANSTEP_SIM_CRASH_AFTER={repl.crash_after}")
        try:
            obj = json.loads(query, parse_constant=_reject_constant)
        except ValueError as e:
            _die(f"Could not parse JSON: {e}")
        kind = classify(obj)
        if kind is None:
            _die(f"Could not parse as a valid JSON command: {query.strip()}")
        repl.garbage = False
        repl.huge = 0
        try:
            resp = repl.handle(kind, obj)
        except Fatal as e:
            _die(str(e))
        if repl.garbage:
            out.write(b"leanstep-sim: this line is not JSON {\n\n")
        else:
            if repl.huge:
                resp.setdefault("messages", []).append(
                    {"severity": "info", "pos": {"line": 0, "column": 0},
                     "endPos": {"line": 0, "column": 0}, "data": "x" * repl.huge})
            out.write(_encode(resp, single_line=bool(repl.huge)))
        out.flush()
