"""Smoke test: the verification acceptance benchmark at --quick size passes all of its checks."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_verify_load_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import verify_load

    out = tmp_path / "verify_load.json"
    status = verify_load.main(["--quick", "--snippets", "100", "--clean", "60", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    figures = json.loads(out.read_text())
    assert all(figures["checks"].values())
    assert figures["snippets"] == 100
    # a hang is answered `timeout`, unless the chaos thread killed its REPL first: then `error`, counted as lost
    hangs = figures["by_kind"]["hang"]
    assert set(hangs) <= {"timeout", "error"} and hangs.get("error", 0) <= figures["lost_to_chaos"], hangs
    assert "throughput:" in printed and "ideal" in printed
    # the fault batch ran under REPL kills and half-open connections, and nothing leaked
    assert figures["chaos_kills"] > 0 and figures["half_open"] == 20
    assert figures["leaked_dirs"] == 0 and figures["leaked_cgroups"] == 0
