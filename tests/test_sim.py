"""Pins the simulated REPL (`python -m leanstep.sim`) as a real subprocess speaking raw framing.

The helper here is deliberately independent of leanstep.repl: it writes bytes and splits the
output at the first empty line, as a client of the real REPL would.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYTHON_DIR = str(Path(__file__).resolve().parents[1] / "python")


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    for k in list(env):
        if k.startswith("LEANSTEP_SIM_"):
            del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Sim:
    """A running simulator plus a tiny framing reader with timeouts."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leanstep.sim"], cwd=cwd, env=_env(**env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_raw(self, timeout: float = 10.0) -> bytes | None:
        """Bytes up to and including the first empty line; None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        i = self.buf.index(b"\n\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def send(self, obj: dict, timeout: float = 10.0) -> dict:
        self.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n\n")
        raw = self.read_raw(timeout)
        assert raw is not None, f"no response to {obj}; stderr={self.stderr_now()}"
        return json.loads(raw)

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")

    def close(self, timeout: float = 10.0) -> tuple[int, str]:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.sel.close()
        return rc, err


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
    s.close()


def start(tmp_path, **env) -> Sim:
    return Sim(tmp_path, **env)


def pos(line, column):
    return {"line": line, "column": column}


# ---------------------------------------------------------------- framing


def test_framing_multiline_comments_and_eof(tmp_path):
    s = start(tmp_path)
    s.write(b"# a comment request\n\n-- another one\n\n")
    s.write(b'{"cmd":   \n   "def f := 2"}   \n\n')
    assert json.loads(s.read_raw()) == {"env": 0}
    s.write(b'{"cmd": "#eval f", "env": 0}')  # no blank line: answered at EOF
    s.proc.stdin.close()
    raw = s.read_raw()
    assert json.loads(raw)["messages"][0]["data"] == "2"
    rc, err = s.close()
    assert rc == 0 and err == ""


def test_raw_line_break_inside_string_is_deleted(sim):
    sim.write(b'{"cmd": "theorem foo : 1 = 1 := by\nsorry"}\n\n')
    resp = json.loads(sim.read_raw())
    # joined as "bysorry": a term proof naming an unknown identifier (as the real REPL)
    assert resp["messages"] == [{"severity": "error", "pos": pos(1, 23), "endPos": pos(1, 30),
                                 "data": "Unknown identifier `bysorry`"}]


def test_response_bytes_format(sim):
    sim.write(json.dumps({"cmd": "theorem t (p : Prop) (h : p) : p ∧ p := by sorry"}).encode()
              + b"\n\n")
    raw = sim.read_raw()
    text = raw.decode("utf-8")
    assert text.endswith("}\n\n")
    body = text[:-2]
    assert "" not in body.split("\n")
    assert body.count("\n") >= 2  # pretty-printed over several lines
    assert "⊢" in text and "\\u" not in text  # raw UTF-8
    obj = json.loads(body)
    assert obj["sorries"][0]["goal"] == "p : Prop\nh : p\n⊢ p ∧ p"


def test_eof_on_empty_input_exits_zero(tmp_path):
    s = start(tmp_path)
    rc, err = s.close()
    assert rc == 0 and err == ""


@pytest.mark.parametrize("payload", [
    b'{"cmd": "x"\n\n',
    b'{"cmd": "x", "env": "3"}\n\n',
    b'{"cmd": "x", "env": -1}\n\n',
    b'{"cmd": "x", "infotree": true}\n\n',
    b'{"cmd": "x", "allTactics": "true"}\n\n',
    b'{"tactic": "rfl", "proofState": 1.5}\n\n',
    b'[1, 2]\n\n',
    b'{"foo": 1}\n\n',
    b'\n\n',
])
def test_fatal_requests_kill_the_process(tmp_path, payload):
    s = start(tmp_path)
    s.write(payload)
    assert s.read_raw(timeout=5) is None
    rc, err = s.close()
    assert rc != 0
    assert err.startswith("uncaught exception: ")


def test_unknown_infotree_value_is_ignored(sim):
    assert sim.send({"cmd": "example : True := by trivial", "infotree": "nonsense"}) == {"env": 0}


def test_dispatch_order_extra_fields_change_kind(sim):
    assert sim.send({"cmd": "def f := 1"}) == {"env": 0}
    # a cmd request that also has env + pickleTo is a pickle request
    assert sim.send({"cmd": "def g := 1", "env": 0, "pickleTo": "e.pkl"}) == {"env": 0}
    assert sim.send({"unpickleEnvFrom": "e.pkl"}) == {"env": 1}


def test_deterministic_output(tmp_path):
    reqs = (b'{"cmd": "theorem a (n : Nat) : n = n := by\\n  skip\\n  sorry", "allTactics": true}'
            b'\n\n{"tactic": "intro", "proofState": 0}\n\n{"tactic": "rfl", "proofState": 0}\n\n')
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-m", "leanstep.sim"], input=reqs, cwd=tmp_path,
                           env=_env(), capture_output=True, timeout=30)
        assert p.returncode == 0
        outs.append(p.stdout)
    assert outs[0] == outs[1] and outs[0].count(b"\n\n") == 3


# ---------------------------------------------------------------- ids and errors


def test_ids_envs_and_unknown_ids(sim):
    assert sim.send({"cmd": "def f := 2"}) == {"env": 0}
    r = sim.send({"cmd": "#check g", "env": 0})
    assert r["env"] == 1  # an error still allocates an env
    assert r["messages"] == [{"severity": "error", "pos": pos(1, 7), "endPos": pos(1, 8),
                              "data": "Unknown identifier `g`"}]
    assert sim.send({"cmd": "def f : Nat := by sorry", "env": 5}) == {
        "message": "Unknown environment."}
    assert sim.send({"tactic": "exact 42", "proofState": 0}) == {
        "message": "Unknown proof state."}
    assert sim.send({"pickleTo": "x.pkl", "proofState": 0}) == {
        "message": "Unknown proof State."}
    assert sim.send({"pickleTo": "x.pkl", "env": 9}) == {"message": "Unknown environment."}
    assert sim.send({"cmd": "#check f", "env": 0})["env"] == 2  # error responses used no id


def test_readme_exchange(sim):
    r = sim.send({"cmd": "def f (x : Unit) : Nat := by sorry"})
    assert r == {
        "sorries": [{"proofState": 0, "pos": pos(1, 29), "goal": "x : Unit\n⊢ Nat",
                     "endPos": pos(1, 34)}],
        "messages": [{"severity": "warning", "pos": pos(1, 4), "endPos": pos(1, 5),
                      "data": "declaration uses `sorry`"}],
        "env": 0}
    assert sim.send({"tactic": "apply Int.natAbs", "proofState": 0}) == {
        "proofStatus": "Incomplete: open goals remain", "proofState": 1,
        "goals": ["x : Unit\n⊢ Nat"]}
    assert sim.send({"tactic": "exact -37", "proofState": 1}) == {
        "proofStatus": "Completed", "proofState": 2, "goals": []}


def test_pickle_proof_state_id_sequence(sim):
    assert sim.send({"cmd": "import Lean"}) == {"env": 0}
    assert sim.send({"cmd": "def f : Nat := by sorry", "env": 0})["sorries"][0]["proofState"] == 0
    seq = [
        ({"pickleTo": "c.pkl", "proofState": 0}, 1, ["⊢ Nat"]),
        ({"unpickleProofStateFrom": "c.pkl"}, 2, ["⊢ Nat"]),
        ({"tactic": "have t : Nat := 42", "proofState": 2}, 3, ["t : Nat\n⊢ Nat"]),
        ({"pickleTo": "d.pkl", "proofState": 3}, 4, ["t : Nat\n⊢ Nat"]),
        ({"unpickleProofStateFrom": "d.pkl", "env": 0}, 5, ["t : Nat\n⊢ Nat"]),
    ]
    for req, want_id, goals in seq:
        assert sim.send(req) == {"proofStatus": "Incomplete: open goals remain",
                                 "proofState": want_id, "goals": goals}
    assert sim.send({"tactic": "exact t", "proofState": 5}) == {
        "proofStatus": "Completed", "proofState": 6, "goals": []}
    assert sim.send({"unpickleProofStateFrom": "d.pkl", "env": 7}) == {
        "message": "Unknown environment."}


def test_pickle_env_roundtrip_keeps_names(sim, tmp_path):
    assert sim.send({"cmd": "def f := 42\ntheorem t : 1 + 1 = 2 := by simp"}) == {"env": 0}
    assert sim.send({"pickleTo": "a.pkl", "env": 0}) == {"env": 0}
    assert (tmp_path / "a.pkl").exists()
    assert sim.send({"unpickleEnvFrom": "a.pkl"}) == {"env": 1}
    r = sim.send({"cmd": "#print axioms t\n#eval f", "env": 1})
    assert [m["data"] for m in r["messages"]] == [
        "'t' depends on axioms: [propext, Classical.choice, Quot.sound]", "42"]


def test_unpickle_missing_file_is_fatal(tmp_path):
    s = start(tmp_path)
    s.write(b'{"unpickleEnvFrom": "missing.pkl"}\n\n')
    assert s.read_raw(timeout=5) is None
    rc, err = s.close()
    assert rc != 0 and "uncaught exception" in err


# ---------------------------------------------------------------- command semantics


def test_env_chaining_and_redeclaration(sim):
    assert sim.send({"cmd": "theorem a : True := trivial"}) == {"env": 0}
    assert sim.send({"cmd": "theorem b : True := a", "env": 0}) == {"env": 1}
    r = sim.send({"cmd": "theorem a : True := trivial", "env": 1})
    assert r["messages"] == [{"severity": "error", "pos": pos(1, 8), "endPos": pos(1, 9),
                              "data": "'a' has already been declared"}]
    # a fresh env (no env field) does not see a
    assert sim.send({"cmd": "theorem a : True := trivial"}) == {"env": 3}
    r = sim.send({"cmd": "example : True := b"})
    assert r["messages"][0]["data"] == "Unknown identifier `b`"


def test_arithmetic_truth_and_closing_tactics(sim):
    ok = sim.send({"cmd": "theorem p1 : 2 + 2 = 4 := by norm_num\n"
                          "theorem p2 : 3 * 5 < 16 := by decide\n"
                          "theorem p3 (x : Nat) (h : x > 0) : x ≠ 0 := by omega\n"
                          "theorem p4 : (2 : ℤ) - 3 = -1 := by rfl"})
    assert ok == {"env": 0}
    bad = sim.send({"cmd": "theorem q1 : 2 + 2 = 5 := by decide\n"
                           "theorem q2 : 2 - 3 = 1 := by\n  linarith\n"
                           "theorem q3 : False := by simp"})
    assert [(m["pos"], m["data"].split("\n")[0]) for m in bad["messages"]] == [
        (pos(1, 29), "Tactic `decide` proved that the proposition"),
        (pos(3, 2), "linarith failed to find a contradiction"),
        (pos(4, 25), "simp made no progress"),
    ]
    assert all(m["severity"] == "error" for m in bad["messages"])


def test_unsolved_goals_positions(sim):
    r = sim.send({"cmd": "def f : Nat := by apply Nat.succ"})
    assert r["messages"] == [{"severity": "error", "pos": pos(1, 15), "endPos": pos(1, 32),
                              "data": "unsolved goals\n⊢ Nat"}]
    r = sim.send({"cmd": "def f : Nat := by"})
    assert r["messages"][0]["pos"] == pos(1, 15) and r["messages"][0]["endPos"] == pos(1, 17)
    r = sim.send({"cmd": "theorem t (p q : Prop) (hp : p) : p ∧ q := by\n  constructor\n"
                         "  · exact hp"})
    assert r["messages"][0]["data"] == "unsolved goals\ncase right\np q : Prop\nhp : p\n⊢ q"


def test_parse_error_unknown_tactic_in_command(sim):
    r = sim.send({"cmd": "theorem c : 1 = 1 := by\n  skip\n  exat rfl"})
    assert r["messages"] == [{"severity": "error", "pos": pos(3, 2), "endPos": pos(3, 6),
                              "data": "unknown tactic"}]


def test_sorry_positions_and_code_point_columns(sim):
    r = sim.send({"cmd": "theorem complex_and (p q r : Prop) (h1 : p ∧ q) (h2 : q → r) : "
                         "p ∧ r := by sorry"})
    assert r["sorries"] == [{"proofState": 0, "pos": pos(1, 75),
                             "goal": "p q r : Prop\nh1 : p ∧ q\nh2 : q → r\n⊢ p ∧ r",
                             "endPos": pos(1, 80)}]
    assert r["messages"][0]["pos"] == pos(1, 8) and r["messages"][0]["endPos"] == pos(1, 19)
    r = sim.send({"cmd": "example : 1 = 1 := by\n  have h : 2 = 2 := sorry\n  sorry"})
    assert [(s["proofState"], s["pos"], s["goal"]) for s in r["sorries"]] == [
        (1, pos(2, 20), "⊢ 2 = 2"), (2, pos(3, 2), "h : 2 = 2\n⊢ 1 = 1")]
    assert r["messages"][0]["pos"] == pos(1, 0)  # at the `example` keyword


def test_imports_header_rules(sim):
    r = sim.send({"cmd": "-- header\nprelude\npublic import Mathlib.Tactic\n\nimport Aesop\n"
                         "theorem t : True := trivial"})
    assert r == {"env": 0}
    r = sim.send({"cmd": "import Mathlib", "env": 0})
    assert r["messages"][0]["data"] == (
        "invalid 'import' command, it must be used in the beginning of the file")
    assert r["env"] == 1
    r = sim.send({"cmd": "import Nonexistent.Thing"})
    assert r["messages"][0]["severity"] == "error"
    assert r["messages"][0]["data"].startswith("unknown module prefix 'Nonexistent'")
    assert r["env"] == 2


def test_print_axioms(sim):
    r = sim.send({"cmd": "\n".join([
        "theorem a1 : 2 + 2 = 4 := by norm_num",
        "theorem a2 : 2 + 2 = 4 := by rfl",
        "theorem a3 : 2 + 2 = 4 := rfl",
        "theorem a4 : True := by sorry",
        "theorem a5 : 1 = 1 := by native_decide",
        "axiom my_ax : False",
        "theorem a6 : 1 = 2 := my_ax.elim",
        "theorem a7 : 2 + 2 = 4 := by exact a1",
        "theorem a8 : 2 + 2 = 5 := by omega",
    ])})
    assert r["env"] == 0
    names = ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "nope"]
    r = sim.send({"cmd": "\n".join(f"#print axioms {n}" for n in names), "env": 0})
    assert [m["data"] for m in r["messages"]] == [
        "'a1' depends on axioms: [propext, Classical.choice, Quot.sound]",
        "'a2' does not depend on any axioms",
        "'a3' does not depend on any axioms",
        "'a4' depends on axioms: [sorryAx]",
        "'a5' depends on axioms: [Lean.ofReduceBool]",
        "'a6' depends on axioms: [my_ax]",
        "'a7' depends on axioms: [propext, Classical.choice, Quot.sound]",
        "'a8' depends on axioms: [sorryAx]",
        "Unknown constant `nope`",
    ]
    assert [m["severity"] for m in r["messages"]] == ["info"] * 8 + ["error"]
    assert r["messages"][0]["pos"] == pos(1, 0)


def test_check_and_eval(sim):
    r = sim.send({"cmd": "def f := 2\n#check f\n#eval f + 0\n#eval 7 * 6\n#check 1 + 1"})
    assert [m["data"] for m in r["messages"]] == ["f : Nat", "2", "42", "1 + 1 : Nat"]


def test_all_tactics_root_goals_and_id_order(sim):
    r = sim.send({"cmd": "example : 3 = 5 := by calc\n  3 = 4 := by sorry\n  4 = 5 := by sorry",
                  "allTactics": True, "rootGoals": True})
    assert [s["proofState"] for s in r["sorries"]] == [0, 1, 2]
    assert r["sorries"][2]["pos"] == r["sorries"][2]["endPos"] == pos(1, 19)
    tac = r["tactics"]
    assert [t["proofState"] for t in tac] == [3, 4, 5]
    assert tac[0]["tactic"].startswith("calc") and tac[0]["goals"] == "⊢ 3 = 5"
    assert tac[1] == {"usedConstants": [], "tactic": "sorry", "proofState": 4,
                      "pos": pos(2, 14), "goals": "⊢ 3 = 4", "endPos": pos(2, 19)}
    r = sim.send({"cmd": "def f : Nat := by have t := 37; exact t", "allTactics": True})
    assert [(t["tactic"], t["goals"], t["pos"], t["endPos"]) for t in r["tactics"]] == [
        ("have t := 37", "⊢ Nat", pos(1, 18), pos(1, 30)),
        ("exact t", "t : Nat\n⊢ Nat", pos(1, 32), pos(1, 39))]
    # an allTactics state replays from before its tactic
    assert sim.send({"tactic": "exact 1", "proofState": r["tactics"][0]["proofState"]})[
        "proofStatus"] == "Completed"


def test_infotree_shape(sim):
    r = sim.send({"cmd": "theorem t : True := by\n  have h : 1 = 1 := by\n    rfl\n  trivial",
                  "infotree": "substantive"})
    tree = r["infotree"]
    assert [n["node"]["stx"]["pp"] for n in tree] == ["have h : 1 = 1 := by\n    rfl",
                                                      "trivial"]
    for node in tree + tree[0]["children"]:
        assert node["kind"] == "TacticInfo"
        assert set(node) == {"node", "kind", "children"}
        n = node["node"]
        assert set(n) == {"stx", "name", "goalsBefore", "goalsAfter"}
        assert set(n["stx"]) == {"range", "pp", "kind", "argKinds"}
        assert set(n["stx"]["range"]) == {"synthetic", "start", "finish"}
    assert tree[0]["children"][0]["node"]["goalsBefore"] == ["⊢ 1 = 1"]
    assert tree[0]["children"][0]["node"]["goalsAfter"] == []
    assert tree[1]["node"]["goalsBefore"] == ["h : 1 = 1\n⊢ True"]
    assert "infotree" not in sim.send({"cmd": "theorem u : True := trivial", "infotree": "full"})


def test_file_mode(sim, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.lean").write_text("import Mathlib\ntheorem t : 1 = 1 := by\n  sorry\n")
    r = sim.send({"path": "sub/a.lean", "allTactics": True})
    assert r["sorries"][0]["pos"] == pos(3, 2) and r["env"] == 0
    r = sim.send({"path": "missing.lean"})
    assert set(r) == {"message"} and "missing.lean" in r["message"]


# ---------------------------------------------------------------- tactic mode


@pytest.fixture
def goal_state(sim):
    r = sim.send({"cmd": "theorem d (n : Nat) : n + 1 > n := by sorry\n"
                         "theorem e : 2 + 2 = 5 := by sorry"})
    assert [s["proofState"] for s in r["sorries"]] == [0, 1]
    return sim


def test_tactic_completed_and_progress(goal_state):
    sim = goal_state
    assert sim.send({"tactic": "omega", "proofState": 0}) == {
        "proofStatus": "Completed", "proofState": 2, "goals": []}
    assert sim.send({"tactic": "induction n", "proofState": 0}) == {
        "proofStatus": "Incomplete: open goals remain", "proofState": 3,
        "goals": ["case zero\n⊢ 0 + 1 > 0", "case succ\nn✝ : ℕ\na✝ : n✝ + 1 > n✝\n⊢ n✝ + 1 + 1 > n✝ + 1"]}
    r = sim.send({"tactic": "next => simp", "proofState": 3})
    assert r["proofState"] == 4 and len(r["goals"]) == 1


def test_tactic_thrown_errors_allocate_no_id(goal_state):
    sim = goal_state
    assert sim.send({"tactic": "exat 42", "proofState": 0}) == {
        "message": "Lean error:\n<input>:1:1: unknown tactic"}
    assert sim.send({"tactic": "norm_num", "proofState": 1}) == {
        "message": "Lean error:\nnorm_num failed to simplify"}
    r = sim.send({"tactic": "decide", "proofState": 1})
    assert r == {"message": "Lean error:\nTactic `decide` proved that the proposition\n"
                            "  2 + 2 = 5\nis false"}
    assert sim.send({"tactic": "skip; omega", "proofState": 0}) == {
        "message": "Lean error:\n<input>:1:4: expected end of input"}
    assert sim.send({"tactic": "skip\nomega", "proofState": 0}) == {
        "message": "Lean error:\n<input>:2:0: expected end of input"}
    assert sim.send({"tactic": "skip", "proofState": 0})["proofState"] == 2


def test_tactic_recovered_unknown_identifier(goal_state):
    sim = goal_state
    assert sim.send({"tactic": "exact my_fake_premise", "proofState": 0}) == {
        "proofStatus": "Incomplete: contains sorry", "proofState": 2,
        "messages": [{"severity": "error", "pos": pos(0, 0), "endPos": pos(0, 0),
                      "data": "Unknown identifier `my_fake_premise`"}],
        "goals": []}
    # hypotheses, declared names, literals and dotted names are known
    assert sim.send({"tactic": "exact Nat.lt_succ_self n", "proofState": 0})["proofStatus"] == (
        "Completed")


def test_tactic_sorry(goal_state):
    sim = goal_state
    assert sim.send({"tactic": "sorry", "proofState": 0}) == {
        "sorries": [{"proofState": 2, "goal": "n : Nat\n⊢ n + 1 > n"}],
        "proofStatus": "Incomplete: contains sorry", "proofState": 3, "goals": []}
    # a sorry-tainted state never becomes Completed
    r = sim.send({"tactic": "have h : n < n + 1 := by sorry", "proofState": 0})
    assert r["sorries"] == [{"proofState": 4, "goal": "n : Nat\n⊢ n < n + 1"}]
    assert r["proofState"] == 5 and r["goals"] == ["n : Nat\nh : n < n + 1\n⊢ n + 1 > n"]
    assert sim.send({"tactic": "omega", "proofState": 5})["proofStatus"] == (
        "Incomplete: contains sorry")


def test_tactic_multiline_blocks(goal_state):
    sim = goal_state
    r = sim.send({"tactic": "have h : n < n + 1 := by\n  skip\n  omega", "proofState": 0})
    assert r == {"proofStatus": "Incomplete: open goals remain", "proofState": 2,
                 "goals": ["n : Nat\nh : n < n + 1\n⊢ n + 1 > n"]}
    assert sim.send({"tactic": "(skip; omega)", "proofState": 0})["proofStatus"] == "Completed"
    assert sim.send({"tactic": "{ skip\n  omega }", "proofState": 0})["proofStatus"] == (
        "Completed")
    r = sim.send({"tactic": "{ skip }", "proofState": 0})
    assert r["proofStatus"] == "Incomplete: contains sorry" and r["goals"] == []
    assert r["messages"][0]["data"] == "unsolved goals\nn : Nat\n⊢ n + 1 > n"
    assert sim.send({"tactic": "induction n with\n| zero => simp\n| succ k ih => omega",
                     "proofState": 0})["proofStatus"] == "Completed"
    assert sim.send({"tactic": "first | decide | skip", "proofState": 1})["goals"] == [
        "⊢ 2 + 2 = 5"]
    assert sim.send({"tactic": "try linarith", "proofState": 1})["goals"] == ["⊢ 2 + 2 = 5"]


def test_tactic_branching(sim):
    sim.send({"cmd": "theorem t (p q r : Prop) (h1 : p ∧ q) (h2 : q → r) : p ∧ r := by sorry"})
    r = sim.send({"tactic": "apply And.intro", "proofState": 0})
    assert r["goals"] == ["case left\np q r : Prop\nh1 : p ∧ q\nh2 : q → r\n⊢ p",
                          "case right\np q r : Prop\nh1 : p ∧ q\nh2 : q → r\n⊢ r"]
    assert sim.send({"tactic": "exact h1.left", "proofState": 1})["proofState"] == 2
    r = sim.send({"tactic": "apply h2", "proofState": 2})
    assert r["goals"] == ["case right\np q r : Prop\nh1 : p ∧ q\nh2 : q → r\n⊢ q"]
    assert sim.send({"tactic": "exact h1.right", "proofState": 3})["proofStatus"] == "Completed"
    # state 0 is unchanged: branch again
    assert sim.send({"tactic": "constructor", "proofState": 0})["proofState"] == 5


def test_tactic_mode_sees_env_before_the_command(sim):
    sim.send({"cmd": "theorem helper : True := trivial\ntheorem t : True := by sorry"})
    r = sim.send({"tactic": "exact helper", "proofState": 0})
    assert r["messages"][0]["data"] == "Unknown identifier `helper`"
    sim.send({"cmd": "theorem u : True := by sorry", "env": 0})
    assert sim.send({"tactic": "exact helper", "proofState": 2})["proofStatus"] == "Completed"


# ---------------------------------------------------------------- costs and faults


def _timed(sim, req):
    t = time.monotonic()
    r = sim.send(req)
    return r, time.monotonic() - t


def test_import_cost_only_for_import_requests(tmp_path):
    s = start(tmp_path, LEANSTEP_SIM_IMPORT_SECONDS="0.4")
    try:
        r, dt = _timed(s, {"cmd": "import Mathlib"})
        assert r == {"env": 0} and dt >= 0.4
        r, dt = _timed(s, {"cmd": "theorem t : True := trivial", "env": 0})
        assert r == {"env": 1} and dt < 0.3
        r, dt = _timed(s, {"cmd": "theorem t : True := trivial"})
        assert r == {"env": 2} and dt < 0.3
    finally:
        s.close()


def test_cmd_tactic_and_proof_costs(tmp_path):
    s = start(tmp_path, LEANSTEP_SIM_CMD_SECONDS="0.2", LEANSTEP_SIM_TACTIC_SECONDS="0.3",
              LEANSTEP_SIM_PROOF_SECONDS="0.25")
    try:
        _, dt = _timed(s, {"cmd": "def f := 1"})
        assert 0.2 <= dt < 0.4
        _, dt = _timed(s, {"cmd": "theorem a : True := trivial\ntheorem b : True := by sorry"})
        assert dt >= 0.7
        _, dt = _timed(s, {"cmd": "-- sim: delay 0\ntheorem c : True := trivial"})
        assert dt < 0.4  # the directive overrides the proof cost for c
        _, dt = _timed(s, {"tactic": "trivial", "proofState": 0})
        assert dt >= 0.3
    finally:
        s.close()


def test_tactic_costs_can_follow_a_lognormal_drawn_once_per_tactic_text(tmp_path):
    import math
    import statistics

    from leanstep.sim.repl import tactic_seconds

    draws = [tactic_seconds(f"simp [lemma_{i}]", 0.05, 1.0) for i in range(4000)]
    logs = [math.log(d) for d in draws]
    assert statistics.median(draws) == pytest.approx(0.05, rel=0.1)
    assert statistics.stdev(logs) == pytest.approx(1.0, rel=0.1)
    assert tactic_seconds("omega", 0.05, 1.0) == tactic_seconds("omega", 0.05, 1.0)
    assert tactic_seconds("omega", 0.05, 0.0) == 0.05 and tactic_seconds("omega", 0.0, 1.0) == 0.0
    slow = next(f"skip_{i}" for i in range(1000) if tactic_seconds(f"skip_{i}", 0.05, 1.0) > 0.3)
    s = start(tmp_path, LEANSTEP_SIM_TACTIC_SECONDS="0.05", LEANSTEP_SIM_TACTIC_SIGMA="1.0")
    try:
        s.send({"cmd": "example : 1 = 1 := by sorry"})
        _, dt = _timed(s, {"tactic": "skip", "proofState": 0})
        assert dt >= tactic_seconds("skip", 0.05, 1.0)
        _, dt = _timed(s, {"tactic": slow, "proofState": 0})  # an unknown tactic still costs its draw
        assert dt >= tactic_seconds(slow, 0.05, 1.0) > 0.3
    finally:
        s.close()


def test_delay_directive_in_text_and_tactic(sim):
    r, dt = _timed(sim, {"cmd": "-- sim: delay 0.3\ndef f : Nat := by sorry"})
    assert dt >= 0.3 and r["env"] == 0
    r, dt = _timed(sim, {"tactic": "sim_delay 0.3", "proofState": 0})
    assert dt >= 0.3 and r["goals"] == ["⊢ Nat"]


def test_hang_directive(tmp_path):
    s = start(tmp_path)
    s.write(b'{"cmd": "-- sim: hang"}\n\n')
    assert s.read_raw(timeout=0.7) is None
    assert s.proc.poll() is None
    s.proc.kill()
    s.close()


@pytest.mark.parametrize("req", [{"cmd": "theorem t : True := by\n  -- sim: crash\n  trivial"},
                                 {"tactic": "sim_crash", "proofState": 0}])
def test_crash_directive(tmp_path, req):
    s = start(tmp_path)
    s.send({"cmd": "def f : Nat := by sorry"})
    s.write(json.dumps(req).encode() + b"\n\n")
    assert s.read_raw(timeout=5) is None
    rc, err = s.close()
    assert rc == 134 and "crash" in err


def test_crash_after_env(tmp_path):
    s = start(tmp_path, LEANSTEP_SIM_CRASH_AFTER="3")
    assert s.send({"cmd": "def a := 1"}) == {"env": 0}
    s.write(b"-- comments do not count\n\n")
    assert s.send({"cmd": "def b := 1"}) == {"env": 1}
    s.write(b'{"cmd": "def c := 1"}\n\n')
    assert s.read_raw(timeout=5) is None
    rc, err = s.close()
    assert rc == 134 and err


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for RSS")
def test_grow_directive_and_mem_per_cmd(tmp_path):
    s = start(tmp_path, LEANSTEP_SIM_MEM_PER_CMD_MB="20")
    try:
        s.send({"cmd": "def f : Nat := by sorry"})
        before = _rss_kb(s.proc.pid)
        s.send({"tactic": "sim_grow 60", "proofState": 0})
        mid = _rss_kb(s.proc.pid)
        assert mid - before >= 55 * 1024
        s.send({"cmd": "-- sim: grow 30"})
        after = _rss_kb(s.proc.pid)
        assert after - mid >= 45 * 1024  # 30 from the directive + 20 per cmd
    finally:
        s.close()


def test_garbage_directive_then_recovers(sim):
    sim.write(b'{"cmd": "-- sim: garbage"}\n\n')
    raw = sim.read_raw()
    with pytest.raises(ValueError):
        json.loads(raw)
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 2
    assert sim.send({"cmd": "def f := 1"}) == {"env": 1}


def test_huge_directive_single_line(sim):
    sim.write(b'{"cmd": "-- sim: huge 200000"}\n\n')
    raw = sim.read_raw()
    assert len(raw) > 200000 and raw.count(b"\n") == 2
    resp = json.loads(raw)
    assert resp["env"] == 0 and len(resp["messages"][-1]["data"]) == 200000


def test_write_directive(sim, tmp_path):
    target = tmp_path / "probe.txt"
    r = sim.send({"cmd": f"-- sim: write {target}\n-- sim: write {tmp_path}/no/such/dir/x"})
    d = [m["data"] for m in r["messages"]]
    assert d[0] == f"sim write {target}: ok" and target.exists()
    assert d[1].startswith(f"sim write {tmp_path}/no/such/dir/x: failed: ")
    sim.send({"cmd": "def f : Nat := by sorry"})
    r = sim.send({"tactic": "sim_write probe2.txt", "proofState": 0})
    assert r["messages"][0]["data"] == "sim write probe2.txt: ok"
    assert (tmp_path / "probe2.txt").exists() and r["goals"] == ["⊢ Nat"]


def test_connect_directive(sim):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    try:
        r = sim.send({"cmd": f"-- sim: connect 127.0.0.1:{port}\n"
                             f"-- sim: connect 127.0.0.1:{closed_port}"})
    finally:
        srv.close()
    d = [m["data"] for m in r["messages"]]
    assert d[0] == f"sim connect 127.0.0.1:{port}: ok"
    assert d[1].startswith(f"sim connect 127.0.0.1:{closed_port}: failed:")


def test_fork_and_bigfile_directives(sim, tmp_path):
    r = sim.send({"cmd": "-- sim: fork 2\n-- sim: bigfile 2"})
    assert [m["data"] for m in r["messages"]] == ["sim fork 2: started 2", "sim bigfile 2: ok"]
    assert not (tmp_path / "leanstep-sim-bigfile.bin").exists()


def test_bad_directive_is_an_error_message(sim):
    r = sim.send({"cmd": "-- sim: frobnicate 1\n-- sim: delay soon"})
    assert [m["severity"] for m in r["messages"]] == ["error", "error"]
    assert r["env"] == 0


def test_rcases_and_obtain_split_hypotheses(sim):
    r = sim.send({"cmd": "theorem t (p q : Prop) (h : p ∨ q) : q ∨ p := by\n"
                         "  rcases h with hp | hq\n  · right; exact hp\n  · left; exact hq\n"
                         "theorem v (p q : Prop) (h : p ∧ q) : q := by\n"
                         "  obtain ⟨hp, hq⟩ := h\n  sorry"})
    assert r["sorries"][0]["goal"] == "p q : Prop\nhp : p\nhq : q\n⊢ q"
    assert [m["severity"] for m in r["messages"]] == ["warning"]
