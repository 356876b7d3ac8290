"""Smoke test: the generation benchmark runs end to end on a tiny model on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generation_benchmark_quick_cpu(tmp_path):
    out = tmp_path / "generation.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.generation", "--quick", "--device", "cpu", "--runs", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "median s" in proc.stdout
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert set(result["variants"]) == {"plain", "fast", "prefill"}
    for variant in result["variants"].values():
        assert variant["median_s"] > 0 and len(variant["times_s"]) == 2
    # The fast path decodes exactly what generate() decodes.
    assert result["greedy_agreement_tokens"] == result["greedy_check_tokens"]
