"""Smoke tests: the suggestion-checking and editor-session benchmarks run at --quick and say what they measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, tmp_path: Path) -> tuple[str, dict, Path]:
    out, png = tmp_path / f"{script}.json", tmp_path / f"{script}.png"
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", "--quick", "--json", str(out), "--png", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    return proc.stdout, json.loads(out.read_text()), png


def test_suggest_check_quick(tmp_path):
    stdout, result, _ = run_bench("suggest_check", tmp_path)
    assert "| 8 candidates, one hangs |" in stdout and "per tactic" in stdout
    rows = {r["scenario"]: r for r in result["rows"]}
    hang = rows["8 candidates, one hangs"]
    budget = result["budget_s"]
    # Parallel answers at the budget; sequential pays the hang's full limit plus every other tactic.
    assert hang["parallel_median_s"] < budget + 0.5
    assert hang["sequential_median_s"] > budget + 6 * result["simulated_costs_s"]["per_tactic"]
    assert hang["parallel_verdicts"]["timed_out"] == 1 and hang["sequential_verdicts"]["timed_out"] == 1
    assert rows["8 candidates, none hangs"]["speedup"] > 1.5
    # Both ways reach the same verdicts.
    for row in result["rows"]:
        assert row["parallel_verdicts"]["statuses"] == row["sequential_verdicts"]["statuses"]


def test_editor_quick(tmp_path):
    stdout, result, _ = run_bench("editor", tmp_path)
    assert "header-only / leanstep" in stdout
    leanstep, header_only = result["configs"]
    assert result["calls"] == 20 and len(leanstep["calls"]) == 20
    assert result["same_verdicts"]
    # leanstep elaborates the preamble once per REPL; the header-only cache on every call.
    assert leanstep["total_preamble_elaborations"] <= result["workers"]
    assert header_only["total_preamble_elaborations"] >= result["calls"]
    assert result["ratios"]["simulated_lean_s"] > 2
    assert result["ratios"]["mean_latency"] > 1.5
