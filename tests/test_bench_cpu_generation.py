"""Smoke test: the CPU generation benchmark (llamacpp against hf) runs end to end on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_generation_benchmark_quick(tmp_path):
    out = tmp_path / "cpu_generation.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_generation", "--quick", "--runs", "2", "--samples", "4",
         "--new-tokens", "8", "--prompt-tokens", "64", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "p50 s" in proc.stdout
    result = json.loads(out.read_text())
    tiny = result["models"]["tiny"]
    assert tiny["prompt_tokens"] >= 64
    want = {"hf"} if result["note"] else {"hf", "llamacpp-F32", "llamacpp-F32-one-by-one"}
    assert set(tiny["variants"]) == want, result["note"]
    for variant in tiny["variants"].values():
        assert variant["p50_s"] > 0 and len(variant["times_s"]) == 2 and variant["mean_candidates"] >= 1
