"""Shared fixtures: where the recorded transcripts live, how to start the simulated REPL, the tiny models, a
closed port and Kimina's client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = Path(os.environ.get("LEANSTEP_TRANSCRIPTS", ROOT / "tests" / "fixtures" / "repl-transcripts"))
OLDER_TRANSCRIPTS = ROOT / "tests" / "fixtures" / "repl-transcripts-older"  # one folder per REPL release tag
SIM_ARGV = (sys.executable, "-m", "leanstep.sim")
SANDBOX_MODES_COVERED: set[str] = set()  # filled by the sandbox tests, reported at the end of the run
VERDICT_TALLY: dict[str, list[bool]] = {"cheats": [], "honest": []}  # filled by test_verdicts, one entry a check


def transcript_pairs(root: Path = TRANSCRIPTS) -> list[tuple[Path, Path]]:
    """Every (requests, expected responses) pair in a recorded REPL test suite, core and Mathlib."""
    inputs = sorted(root.glob("test/*.in")) + sorted(root.glob("test/Mathlib/test/*.in"))
    return [(i, i.with_suffix(".expected.out")) for i in inputs if i.with_suffix(".expected.out").exists()]


def older_transcript_pairs() -> dict[str, list[tuple[Path, Path]]]:
    """REPL release tag -> its recorded pairs (tests/fixtures/repl-transcripts-older/INDEX.md)."""
    return {tag.name: transcript_pairs(tag) for tag in sorted(OLDER_TRANSCRIPTS.iterdir()) if tag.is_dir()}


def make_workspace(root: Path, *, toolchain: str, mathlib: bool = False, leanstep_dep: bool = False,
                   directives: str = "") -> Path:
    """A Lake project on ``toolchain``: its lakefile (requiring Mathlib where asked, with ``-- standin:``
    ``directives`` for the stand-in tools) and a manifest listing its dependencies."""
    root.mkdir(parents=True, exist_ok=True)
    requires = 'require mathlib from git "https://github.com/leanprover-community/mathlib4"\n' if mathlib else ""
    (root / "lakefile.lean").write_text(f"import Lake\nopen Lake DSL\n{directives}\npackage demo\n{requires}\n"
                                        "lean_lib Demo\n")
    (root / "lean-toolchain").write_text(toolchain + "\n")
    packages = [{"name": "mathlib", "type": "git", "rev": "0" * 40}] if mathlib else []
    if leanstep_dep:
        packages += [{"name": "leanstep", "type": "git", "rev": "1" * 40},
                     {"name": "REPL", "type": "git", "rev": "2" * 40}]
    (root / "lake-manifest.json").write_text(json.dumps({"version": "1.1.0", "packages": packages}))
    return root


def write_jsonl(path: Path, *records: dict[str, Any]) -> Path:
    """``records`` as a JSON-lines file at ``path`` (as the commands write theirs); returns ``path``."""
    from leanstep.api.records import json_line

    path.write_text("".join(json_line(r) for r in records), encoding="utf-8")
    return path


@pytest.fixture
def sim_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a simulated REPL with zero simulated costs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_SIM_")}
    env["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-NeoX and its word tokenizer (``tiny_models.build_tiny_causal``), built once for every test."""
    from tiny_models import build_tiny_causal

    return build_tiny_causal(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny byte-level T5 and its tokenizer (``tiny_models.build_tiny_seq2seq``), built once for every test."""
    from tiny_models import build_tiny_seq2seq

    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-seq2seq"))


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    from server_fixtures import free_port

    return free_port()


@pytest.fixture(scope="module")
def kimina() -> Any:
    """Kimina's own client package, unmodified (``server_fixtures.import_kimina_client``)."""
    from server_fixtures import import_kimina_client

    return import_kimina_client()


def pytest_report_header(config: pytest.Config) -> str:
    found = len(transcript_pairs())
    older = ", ".join(f"{tag}: {len(pairs)}" for tag, pairs in older_transcript_pairs().items())
    return f"leanstep: {found} recorded REPL transcript pairs under {TRANSCRIPTS}; at older REPL tags: {older}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    """Say which sandbox modes the escape tests ran in (a machine without bubblewrap covers fewer), and how
    many cheats and honest proofs of the verdict corpus were judged right."""
    if VERDICT_TALLY["cheats"] or VERDICT_TALLY["honest"]:
        cheats, honest = VERDICT_TALLY["cheats"], VERDICT_TALLY["honest"]
        terminalreporter.write_line(f"leanstep: verdict corpus: cheats rejected {sum(cheats)}/{len(cheats)}, "
                                    f"honest accepted {sum(honest)}/{len(honest)}")
    if SANDBOX_MODES_COVERED or any("test_sandbox" in str(a) for a in config.args):
        covered = ", ".join(sorted(SANDBOX_MODES_COVERED)) or "no mode (every escape test was skipped)"
        who = "as root" if os.geteuid() == 0 else f"as uid {os.geteuid()}"
        terminalreporter.write_line(f"leanstep: sandbox escape tests ran {who} in modes: {covered}")
