"""Smoke test of the peer benchmarks (throughput, overhead) at a tiny size.

leanstep's part always runs against the simulated REPL. The peers (Kimina's server,
LeanInteract) run only when their virtualenv (benchmarks/.peers/venv) already exists:
the test never installs it (that needs the network); otherwise it prints why they
were skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common, overhead, throughput  # noqa: E402


@pytest.fixture(scope="module")
def peers_available() -> bool:
    peer = common.peer_environment(install=False)
    if not peer.ok:
        print(f"\npeer parts skipped: {peer.reason}")
    return peer.ok


def test_workload_is_deterministic_and_has_duplicates():
    cost = common.CostModel(import_s=0.1, proof_median_s=0.01)
    a = common.make_workload(50, headers=2, duplicate_fraction=0.3, cost=cost, seed=3)
    b = common.make_workload(50, headers=2, duplicate_fraction=0.3, cost=cost, seed=3)
    assert a == b
    dups = [s for s in a if s.duplicate_of]
    assert dups and all(s.code == next(o.code for o in a if o.id == s.duplicate_of) for s in dups)
    assert len({s.header for s in a}) == 2
    assert all(("-- sim: delay" in s.body) == (s.cost_s > 0) for s in a)


def test_throughput_quick(tmp_path, peers_available):
    out = tmp_path / "throughput.json"
    systems = "leanstep,kimina,leaninteract" if peers_available else "leanstep"
    rc = throughput.main(["--quick", "-n", "16", "--workers", "1", "--import-s", "0.05", "--proof-median", "0.01",
                          "--systems", systems, "--no-install", "--json", str(out),
                          "--png", str(tmp_path / "throughput.png")])
    assert rc == 0
    data = json.loads(out.read_text())
    runs = {r["system"]: r for r in data["runs"]}
    assert runs["leanstep"]["verdicts_as_expected"] == 16
    assert runs["leanstep"]["proofs_per_s"] > 0
    assert "lognormal" in data["workload"]["cost_model"]
    if peers_available:
        for name in ("kimina", "leaninteract"):
            assert name in runs or name in data["missing"], name
            if name in runs:
                assert runs[name]["verdicts_as_expected"] == 16
                assert runs[name]["ratio_to_leanstep"] > 0
    if (tmp_path / "throughput.png").exists():
        assert (tmp_path / "throughput.png").stat().st_size > 0


def test_overhead_quick(tmp_path, peers_available):
    out = tmp_path / "overhead.json"
    systems = "raw,leanstep,leanstep-http" + (",kimina" if peers_available else "")
    rc = overhead.main(["--quick", "-n", "200", "--systems", systems, "--profile-n", "100", "--no-install",
                        "--json", str(out), "--png", str(tmp_path / "overhead.png")])
    assert rc == 0
    data = json.loads(out.read_text())
    runs = {r["system"]: r for r in data["runs"]}
    for name in ("raw", "leanstep", "leanstep-http"):
        assert runs[name]["errors"] == 0, runs[name]
        assert runs[name]["proofs_per_s"] > 0
    assert runs["leanstep"]["orchestration_ms_per_proof"] is not None
    assert data["profile_top"], "the cProfile summary is empty"
