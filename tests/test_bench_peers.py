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

from benchmarks import common, overhead, throughput, workloads  # noqa: E402


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


def test_rl_samples_repeat_within_a_problem_and_share_their_originals_verdict_and_cost():
    cost = common.CostModel(import_s=0.1, proof_median_s=0.01)
    samples = workloads.rl_samples(40, 32, cost, theta=8.0, seed=1)
    assert samples == workloads.rl_samples(40, 32, cost, theta=8.0, seed=1)
    by_id = {s.id: s for s in samples}
    copies = [s for s in samples if s.duplicate_of]
    assert all(s.group == by_id[s.duplicate_of].group and s.code == by_id[s.duplicate_of].code
               and s.valid == by_id[s.duplicate_of].valid and s.cost_s == by_id[s.duplicate_of].cost_s
               for s in copies)
    share = len(copies) / len(samples)
    assert 0.5 < share < 0.66, share  # theta 8, K 32: 1 - E[distinct]/K = 1 - 13.3/32, about 0.58
    assert len({s.code for s in samples if not s.duplicate_of}) == len(samples) - len(copies)


def test_the_ideal_counts_every_proof_and_the_imports_no_checker_avoids():
    cost = common.CostModel(import_s=1.0, proof_median_s=0.01)
    (mix,) = workloads.build(["mix"], 20, cost)
    assert mix.headers == 2
    assert mix.ideal_s(1, 1.0) == pytest.approx(mix.proof_seconds + 2.0)
    assert mix.ideal_s(4, 1.0) == pytest.approx((mix.proof_seconds + 4.0) / 4)


def test_throughput_quick(tmp_path, peers_available):
    out = tmp_path / "throughput.json"
    systems = "leanstep,kimina,leaninteract" if peers_available else "leanstep"
    rc = throughput.main(["--quick", "-n", "16", "--workers", "1", "--import-s", "0.05", "--proof-median", "0.01",
                          "--workloads", "lean,pass8", "--systems", systems, "--no-install", "--json", str(out),
                          "--png", str(tmp_path / "throughput.png")])
    assert rc == 0
    data = json.loads(out.read_text())
    runs = {(r["workload"], r["system"]): r for r in data["runs"]}
    for workload in ("lean", "pass8"):
        mine = runs[(workload, "leanstep")]
        assert mine["right"] == mine["snippets"] == 16 and mine["efficiency"] > 0
    assert runs[("lean", "leanstep")]["checked"] == 16
    problems = next(w for w in data["workloads"] if w["name"] == "pass8")["problems"]
    assert runs[("pass8", "leanstep")]["problems_right"] == problems == 2
    if peers_available:
        for name in ("kimina", "leaninteract"):
            assert (("lean", name) in runs) or name in data["missing"], name
            if ("lean", name) in runs:
                assert runs[("lean", name)]["right"] == 16 and runs[("pass8", name)]["checked"] == 16
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
