"""Every response the simulator prints decodes with leanstep.repl.protocol and round-trips.

Requests are encoded with the protocol module too, so this also checks that the two agree on
framing: one sim process answers the whole corpus in order, one frame per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leanstep.repl.protocol import (
    CommandResponse,
    ErrorResponse,
    ProtocolError,
    TacticResponse,
    decode_request,
    decode_response,
    encode_request,
)

PYTHON_DIR = str(Path(__file__).resolve().parents[1] / "python")

CORPUS = [
    ({"cmd": "import Mathlib"}, CommandResponse),
    ({"cmd": "def f (x : Unit) : Nat := by sorry", "env": 0}, CommandResponse),
    ({"tactic": "apply Int.natAbs", "proofState": 0}, TacticResponse),
    ({"tactic": "exact -37", "proofState": 1}, TacticResponse),
    ({"tactic": "exat 42", "proofState": 0}, ErrorResponse),
    ({"tactic": "exact my_fake_premise", "proofState": 0}, TacticResponse),
    ({"tactic": "sorry", "proofState": 0}, TacticResponse),
    ({"tactic": "skip; skip", "proofState": 0}, ErrorResponse),
    ({"tactic": "rfl", "proofState": 99}, ErrorResponse),
    ({"cmd": "theorem t : 2 + 2 = 5 := by decide\n#print axioms t\n#eval 6 * 7\n#check t",
      "env": 0}, CommandResponse),
    ({"cmd": "example : 3 = 5 := by calc\n  3 = 4 := by sorry\n  4 = 5 := by sorry",
      "allTactics": True, "rootGoals": True, "infotree": "full"}, CommandResponse),
    ({"cmd": "theorem u (p q : Prop) (hp : p) (hq : q) : p ∧ q := by\n  constructor\n"
             "  · exact hp\n  · exact hq", "env": 0, "infotree": "substantive"},
     CommandResponse),
    ({"cmd": "theorem v (n : Nat) : n + 0 = n := by\n  induction n with\n"
             "  | zero => rfl\n  | succ k ih => sorry", "allTactics": True}, CommandResponse),
    ({"tactic": "constructor", "proofState": 1}, TacticResponse),
    ({"cmd": "import Mathlib", "env": 0}, CommandResponse),
    ({"cmd": "def f := 1", "env": 42}, ErrorResponse),
    ({"path": "a.lean"}, CommandResponse),
    ({"path": "missing.lean", "env": 0}, ErrorResponse),
    ({"pickleTo": "e.pkl", "env": 1}, CommandResponse),
    ({"unpickleEnvFrom": "e.pkl"}, CommandResponse),
    ({"pickleTo": "p.pkl", "proofState": 0}, TacticResponse),
    ({"unpickleProofStateFrom": "p.pkl"}, TacticResponse),
    ({"unpickleProofStateFrom": "p.pkl", "env": 0}, TacticResponse),
    ({"pickleTo": "p.pkl", "proofState": 999}, ErrorResponse),
    ({"cmd": "-- sim: write probe.txt\n-- sim: huge 70000"}, CommandResponse),
    ({"tactic": "sim_huge 5000", "proofState": 0}, TacticResponse),
    ({"cmd": "theorem w : True := by\n  sim_fork 1\n  trivial"}, CommandResponse),
]


def _run(requests: list[dict], cwd: Path) -> bytes:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    data = b"".join(encode_request(decode_request(r)) for r in requests)
    proc = subprocess.run([sys.executable, "-m", "leanstep.sim"], input=data, cwd=cwd, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def test_every_sim_response_decodes_and_round_trips(tmp_path):
    (tmp_path / "a.lean").write_text("import Mathlib\ntheorem a : 1 + 1 = 2 := by\n  norm_num\n")
    out = _run([req for req, _ in CORPUS], tmp_path).decode("utf-8")
    assert out.endswith("\n\n")
    frames = out[:-2].split("\n\n")
    assert len(frames) == len(CORPUS)
    for (req, kind), frame in zip(CORPUS, frames):
        resp = decode_response(frame)
        assert isinstance(resp, kind), (req, frame[:200])
        assert resp.to_json() == json.loads(frame), req
    statuses = [decode_response(f) for f in frames]
    assert statuses[3].completed and not statuses[5].completed
    assert statuses[4].is_lean_error
    assert statuses[9].errors and statuses[9].errors[0].is_error


def test_garbage_frame_is_rejected_by_decoder(tmp_path):
    out = _run([{"cmd": "-- sim: garbage"}, {"cmd": "def f := 1"}], tmp_path).decode()
    frames = out[:-2].split("\n\n")
    with pytest.raises(ProtocolError):
        decode_response(frames[0])
    assert decode_response(frames[1]) == CommandResponse(env=1)
