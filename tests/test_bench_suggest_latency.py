"""Smoke test: the editor-latency benchmark runs at a tiny size and measures what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_suggest_latency_quick(tmp_path):
    out, png = tmp_path / "suggest_latency.json", tmp_path / "suggest_latency.png"
    proc = subprocess.run(
        [sys.executable, "-m", "leanstep", "bench", "suggest-latency", "--quick", "--requests", "8", "--calls", "2",
         "--json", str(out), "--png", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| editors | batching |" in proc.stdout and "| scenario | calls |" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = json.loads(out.read_text())
    cells = {(row["mode"], row["clients"]): row for row in result["editors"]}
    assert set(cells) == {(mode, n) for mode in ("batching off", "batching on") for n in (1, 4)}
    for row in cells.values():  # every request answered
        assert row["errors"] == 0 and row["requests"] >= 8
    assert cells[("batching off", 4)]["mean_batch"] == 1.0
    assert cells[("batching on", 4)]["mean_batch"] > 1.0  # four editors at once shared model calls
    e2e = result["end_to_end"]
    plain, hanging = e2e["scenarios"]
    assert not plain["hanging_candidate"] and hanging["hanging_candidate"]
    # The hanging candidate is cut off at the checking budget on every call, and only it is.
    assert hanging["hang_cut_off"] == hanging["calls"] == 2
    assert hanging["checking_max_s"] < e2e["budget_s"] + 1.0
    assert plain["hang_cut_off"] == 0
    for scenario in (plain, hanging):
        for counts in scenario["counts"]:  # every candidate went through Lean (the simulator)
            assert counts["unchecked"] == 0 and sum(counts.values()) > 0
