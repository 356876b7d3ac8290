"""Smoke test: the proving benchmark runs at --quick and says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_prove_benchmark_quick(tmp_path):
    out, png = tmp_path / "prove.json", tmp_path / "prove.png"
    proc = subprocess.run([sys.executable, "benchmarks/prove.py", "--quick", "--json", str(out), "--png", str(png)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "first valid wins saves" in proc.stdout and "expansions/s" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = json.loads(out.read_text())
    search = result["search"]
    assert all(row["proved"] and row["same_proof"] for row in search)
    assert len({row["expansions"] for row in search[:2]}) == 1  # more REPLs: the same search, checked faster
    every, first = result["pass8"]["check_all"], result["pass8"]["first_valid"]
    assert every["pass_at"]["8"] == first["pass_at"]["8"] and every["solved"] == first["solved"]
    assert first["checked"] + first["skipped"] == every["checked"] and first["skipped"] > 0
