"""The sealed trust level (leanstep.check.sealed): compile, kernel re-check and axiom audit outside the REPL.

Stand-in executables that play lake, lean and leanchecker (tests/standins/) come first on PATH; they
accept only the command lines the real tools accept, record each call, and fail as the real tools
fail when the submission's `-- standin:` directives say so. The last test runs the real tools on a
tiny workspace when `lake` is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from leanstep.check.sealed import SealedChecker, SealedReport
from leanstep.repl.sandbox import SandboxPolicy, bwrap_usable, plan_sandbox, reachable_by_others
from leanstep.workspace import find_lake
from standins._standin import install
TOOLS = ("lake", "lean", "leanchecker")
TOOLCHAIN = "leanprover/lean4:v4.28.0"
MODULE = re.compile(r"LeanstepSealed_[0-9a-f]{32}")
HEADER = "import Init"
GOOD = "theorem a : 1 + 1 = 2 := rfl\n\n-- standin: axioms b=propext,Classical.choice\ntheorem b : True := trivial\n"


@dataclass
class StandInLean:
    """A stand-in toolchain, a workspace that uses it, and where sealed checks leave their scratch."""

    base: Path
    toolchain: Path
    workspace: Path
    scratch: Path
    log: Path
    python: str
    mode: str = "none"

    def calls(self, tool: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def checker(self) -> SealedChecker:
        plan = plan_sandbox(("lake", "env"), cwd=self.workspace, env=dict(os.environ),
                            policy=SandboxPolicy(self.mode), workdir_parent=self.scratch)
        return SealedChecker(self.workspace, plan, scratch_parent=self.scratch)

    def check(self, body: str, names: list[str], *, header: str = HEADER, timeout: float = 30.0) -> SealedReport:
        return self.checker().check(header, body, names, timeout)

    def remove(self, tool: str) -> None:
        (self.toolchain / "bin" / tool).unlink()

    def build_lean4checker(self) -> Path:
        """lean4checker built in the workspace as a dependency (the leanchecker stand-in under that name)."""
        return install("leanchecker",
                       self.workspace / ".lake/packages/lean4checker/.lake/build/bin/lean4checker", self.python)


def make_standins(base: Path, monkeypatch: pytest.MonkeyPatch, python: str, mode: str = "none") -> StandInLean:
    toolchain, workspace, scratch, home = base / "toolchain", base / "workspace", base / "scratch", base / "home"
    for directory in (toolchain / "lib/lean", workspace, scratch, home):
        directory.mkdir(parents=True)
    for tool in TOOLS:
        install(tool, toolchain / "bin" / tool, python)
    (workspace / "lakefile.lean").write_text("import Lake\nopen Lake DSL\n\npackage demo\n")
    (workspace / "lean-toolchain").write_text(TOOLCHAIN + "\n")
    log = base / "calls.jsonl"
    monkeypatch.setenv("PATH", os.pathsep.join([str(toolchain / "bin"), os.environ.get("PATH", "")]))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LEAN_STANDIN_LOG", str(log))
    for var in ("LEANSTEP_LAKE", "ELAN_HOME", "LEAN_PATH"):
        monkeypatch.delenv(var, raising=False)
    return StandInLean(base, toolchain, workspace, scratch, log, python, mode)


@pytest.fixture
def lean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInLean]:
    """Stand-ins first on PATH, no sandbox; every test ends with no scratch directory left behind."""
    standins = make_standins(tmp_path, monkeypatch, sys.executable)
    yield standins
    assert list(standins.scratch.iterdir()) == [], "a sealed check left its scratch directory behind"


def call_argv(lean: StandInLean) -> list[tuple[str, list[str]]]:
    return [(Path(c["path"]).name, c["argv"]) for c in lean.calls()]


# --------------------------------------------------------------------------- #
# unavailable(): what is missing, and what to install


def test_everything_present_means_available(lean: StandInLean) -> None:
    assert lean.checker().unavailable() is None


def test_no_workspace_says_to_pass_one(lean: StandInLean) -> None:
    checker = SealedChecker(None, lean.checker().sandbox, scratch_parent=lean.scratch)
    assert "pass --workspace DIR" in (checker.unavailable() or "")


def test_a_directory_without_a_lakefile_is_not_a_workspace(lean: StandInLean) -> None:
    (lean.workspace / "lakefile.lean").unlink()
    assert "is not a Lake project" in (lean.checker().unavailable() or "")


def test_no_lake_says_to_install_elan(lean: StandInLean) -> None:
    lean.remove("lake")
    assert find_lake() is None
    problem = lean.checker().unavailable() or ""
    assert "`lake` is not on PATH" in problem and "install elan" in problem


def test_a_failing_lake_env_is_quoted_with_what_to_run(lean: StandInLean) -> None:
    (lean.workspace / "lakefile.lean").write_text("-- standin: broken-lakefile\n")
    problem = lean.checker().unavailable() or ""
    assert "`lake env` failed" in problem and "unknown package 'demo'" in problem and "lake build" in problem


def test_a_toolchain_without_lean_says_to_install_it(lean: StandInLean) -> None:
    lean.remove("lean")
    assert "install the workspace's toolchain" in (lean.checker().unavailable() or "")


def test_no_re_checker_names_both_ways_to_get_one(lean: StandInLean) -> None:
    lean.remove("leanchecker")
    problem = lean.checker().unavailable() or ""
    assert TOOLCHAIN in problem and "v4.28 or later" in problem and "`lake build lean4checker`" in problem


def test_checking_while_unavailable_is_an_error_not_a_verdict(lean: StandInLean) -> None:
    lean.remove("leanchecker")
    report = lean.check(GOOD, ["a"])
    assert report.error is not None and report.error.startswith("sealed checking unavailable: no kernel re-checker")
    assert report.rejected is None and report.axioms == {}


def test_lean4checker_built_in_the_workspace_stands_in_for_leanchecker(lean: StandInLean) -> None:
    lean.remove("leanchecker")
    built = lean.build_lean4checker()
    report = lean.check(GOOD, ["a"])
    assert report.error is None and report.axioms == {"a": []}
    [recheck] = lean.calls("lean4checker")
    assert recheck["path"] == str(built)


def test_the_toolchain_is_probed_once_per_checker(lean: StandInLean) -> None:
    checker = lean.checker()
    for _ in range(2):
        assert checker.check(HEADER, GOOD, ["a"], 30).error is None
    assert len(lean.calls("lake")) == 1


# --------------------------------------------------------------------------- #
# check(): the outcomes


def test_a_good_module_gives_the_axioms_of_each_name(lean: StandInLean) -> None:
    report = lean.check(GOOD, ["a", "b"])
    assert report == SealedReport({"a": [], "b": ["propext", "Classical.choice"]}, time=report.time)
    assert report.time > 0


def test_the_tools_get_the_command_lines_the_real_tools_expect(lean: StandInLean) -> None:
    lean.check(GOOD, ["a", "b"])
    [probe, compile_, recheck, audit] = lean.calls()
    [module] = recheck["argv"]
    assert MODULE.fullmatch(module)
    scratch = Path(compile_["argv"][1])
    assert scratch.parent == lean.scratch
    assert call_argv(lean) == [
        ("lake", ["env"]),
        ("lean", ["-R", str(scratch), "-o", f"{scratch}/out/{module}.olean", f"{scratch}/{module}.lean"]),
        ("leanchecker", [module]),
        ("lean", ["--run", f"{scratch}/LeanstepAudit.lean", module, "a", "b"]),
    ]
    assert probe["cwd"] == str(lean.workspace)
    assert Path(compile_["path"]) == Path(recheck["path"]).parent / "lean"  # the toolchain `lake env` named
    lake_path = f"{lean.workspace}/.lake/build/lib/lean{os.pathsep}{lean.toolchain}/lib/lean"
    for call in (compile_, recheck, audit):  # lake's LEAN_PATH, then the scratch output: it shadows nothing
        assert call["lean_path"] == f"{lake_path}{os.pathsep}{scratch}/out"


def test_no_names_means_no_audit(lean: StandInLean) -> None:
    report = lean.check(GOOD, [])
    assert report.error is None and report.rejected is None and report.axioms == {}
    assert [tool for tool, _ in call_argv(lean)] == ["lake", "lean", "leanchecker"]


def test_a_compile_failure_is_rejected_with_lean_s_error_line(lean: StandInLean) -> None:
    report = lean.check("-- standin: compile-error\ntheorem a : 1 + 1 = 2 := nope\n", ["a"])
    assert report.rejected == "lean rejected the module: submission:2:8: error: unknown identifier 'nope'"
    assert report.error is None and report.axioms == {}
    assert lean.calls("leanchecker") == []


def test_a_kernel_re_check_failure_is_rejected_with_the_kernel_s_complaint(lean: StandInLean) -> None:
    report = lean.check("-- standin: checker-reject\ntheorem a : 1 + 1 = 2 := rfl\n", ["a"])
    assert report.rejected == ("leanchecker rejected the module: uncaught exception: (kernel) declaration type "
                               "mismatch, 'bad' has type")
    assert report.error is None and len(lean.calls("lean")) == 1  # no audit after a rejection


def test_a_hanging_checker_is_an_error_naming_the_tool_and_the_limit(lean: StandInLean) -> None:
    report = lean.check("-- standin: checker-hang\ntheorem a : True := trivial\n", ["a"], timeout=1.5)
    assert report.error == ("leanchecker did not finish within the 1.5 s limit (re-checking the module with the "
                            "kernel; it was killed)")
    assert report.rejected is None and 1.5 <= report.time < 10
    [hung] = lean.calls("leanchecker")
    assert not psutil.pid_exists(hung["pid"]) or psutil.Process(hung["pid"]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(("directive", "error"), [
    ("compile-crash", "lean was killed by SIGSEGV (compiling the module)"),
    ("checker-crash", "leanchecker was killed by SIGSEGV (re-checking the module with the kernel)"),
])
def test_a_tool_killed_by_a_signal_is_an_error_not_a_rejection(lean: StandInLean, directive: str, error: str) -> None:
    report = lean.check(f"-- standin: {directive}\ntheorem a : True := trivial\n", ["a"])
    assert report.error == error and report.rejected is None


def test_an_audit_answer_without_this_run_s_nonce_is_refused(lean: StandInLean) -> None:
    report = lean.check("-- standin: audit-forge\n-- standin: axioms a=sorryAx\ntheorem a : False := sorry\n", ["a"])
    assert report.error is not None and "nonce" in report.error and report.axioms == {}


def test_a_name_the_compiled_module_lacks_leaves_the_audit_incomplete(lean: StandInLean) -> None:
    report = lean.check(GOOD, ["a", "ghost"])
    assert report.error == "axiom audit incomplete: ghost not found in the compiled module"


def test_output_is_bounded_however_much_a_tool_prints(lean: StandInLean) -> None:
    tracemalloc.start()
    try:
        report = lean.check("-- standin: compile-flood\ntheorem a : True := trivial\n", ["a"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rejected is not None and report.rejected.startswith("lean rejected the module: ")
    assert peak < 16 * 1024 * 1024  # the tool printed 64 MiB


# --------------------------------------------------------------------------- #
# The scratch directory


def test_the_module_is_named_by_a_hash_never_by_the_submission(lean: StandInLean) -> None:
    escape = "-- ../../../etc/passwd\ntheorem a : True := trivial\n"
    lean.check(escape, ["a"])
    lean.check(escape, ["a"])
    lean.check(GOOD, ["a"])
    sources = [Path(c["argv"][-1]) for c in lean.calls("lean") if c["argv"][0] == "-R"]
    assert all(MODULE.fullmatch(s.stem) and s.suffix == ".lean" and s.parent.parent == lean.scratch
               for s in sources)
    assert sources[0].name == sources[1].name != sources[2].name  # the same text, the same module
    assert sorted(p.name for p in lean.base.iterdir()) == ["calls.jsonl", "home", "scratch", "toolchain",
                                                           "workspace"]


def test_the_kernel_reads_a_compiled_module_no_one_can_change(lean: StandInLean) -> None:
    lean.check(GOOD, ["a"])
    [recheck] = lean.calls("leanchecker")
    assert list(recheck["olean_modes"].values()) == [0o444]


def test_a_compiled_module_that_is_a_link_is_rejected(lean: StandInLean) -> None:
    report = lean.check("-- standin: compile-symlink\ntheorem a : True := trivial\n", ["a"])
    assert report.rejected is not None and "is not a regular file" in report.rejected
    assert lean.calls("leanchecker") == []


def test_the_scratch_directory_goes_even_when_a_tool_locked_parts_of_it(lean: StandInLean) -> None:
    report = lean.check("-- standin: compile-lock\ntheorem a : True := trivial\n", ["a"])
    assert report.error is None and report.axioms == {"a": []}
    # the fixture asserts that nothing is left in the scratch parent


# --------------------------------------------------------------------------- #
# Under the sandbox the pool uses (worker ids of their own as root)


def _unprivileged_python() -> str | None:
    for candidate in ("/usr/bin/python3", shutil.which("python3"), sys.executable):
        if candidate and os.path.exists(candidate) and reachable_by_others(Path(os.path.realpath(candidate))):
            return candidate
    return None


def _isolating_modes() -> list[str]:
    return [m for m in ("bwrap", "rlimit") if m != "bwrap" or bwrap_usable()]


@pytest.mark.parametrize("mode", _isolating_modes())
def test_every_step_runs_in_the_pools_sandbox(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root each step runs under a worker id of its own: the compiled module stays readable and sealed."""
    python = _unprivileged_python()
    if python is None:
        pytest.skip("no Python interpreter an unprivileged user can run, for the stand-ins")
    base = Path(tempfile.mkdtemp(prefix="leanstep-sealed-test-"))  # tmp_path is closed to other users
    try:
        lean = make_standins(base, monkeypatch, python, mode)
        (base / "log").mkdir()
        (base / "log").chmod(0o1777)
        lean.log = base / "log" / "calls.jsonl"
        monkeypatch.setenv("LEAN_STANDIN_LOG", str(lean.log))
        for path in [base, *base.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
        lean.log.touch(mode=0o666)  # every worker id appends to it
        lean.log.chmod(0o666)
        checker = lean.checker()
        assert checker.check(HEADER, GOOD, ["a", "b"], 30).axioms == {"a": [], "b": ["propext", "Classical.choice"]}
        bad = "-- standin: checker-reject\ntheorem a : True := trivial\n"
        rejected = checker.check(HEADER, bad, ["a"], 30).rejected
        assert rejected is not None and "(kernel) declaration type mismatch" in rejected
        assert list(lean.scratch.iterdir()) == []
        if mode == "rlimit":  # under bwrap the file system is read-only and the stand-ins cannot keep a log
            assert [c["tool"] for c in lean.calls()] == ["lake", "lean", "leanchecker", "lean", "lean", "leanchecker"]
            assert 0 not in {c["uid"] for c in lean.calls()}
            assert [list(c["olean_modes"].values()) for c in lean.calls("leanchecker")] == [[0o444], [0o444]]
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- #
# Real Lean


@pytest.mark.lean
def test_the_real_tools_on_a_tiny_workspace(tmp_path: Path) -> None:
    """Compile, leanchecker and the audit program with the installed toolchain (elan's default one)."""
    if find_lake() is None:
        reason = "no `lake` on PATH or in ~/.elan/bin: install elan to run the sealed check with real Lean"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    workspace = tmp_path / "tiny"
    workspace.mkdir()
    (workspace / "lakefile.toml").write_text('name = "tiny"\n')
    plan = plan_sandbox(("lake", "env"), cwd=workspace, env=dict(os.environ), policy=SandboxPolicy("none"),
                        workdir_parent=tmp_path)
    checker = SealedChecker(workspace, plan, scratch_parent=tmp_path)
    problem = checker.unavailable()
    if problem is not None:
        print(f"SKIP: {problem}")
        pytest.skip(problem)
    body = ("theorem two : 1 + 1 = 2 := rfl\n"
            "theorem uses_choice (p : Prop) : p ∨ ¬p := Classical.em p\n"
            "axiom unsound : False\n"
            "theorem bad : 1 = 2 := unsound.elim\n")
    report = checker.check("", body, ["two", "uses_choice", "bad"], 300)
    assert report.error is None and report.rejected is None, report
    assert report.axioms["two"] == []
    assert set(report.axioms["uses_choice"]) == {"propext", "Classical.choice", "Quot.sound"}
    assert report.axioms["bad"] == ["unsound"]
    rejected = checker.check("", "theorem wrong : 1 + 1 = 3 := rfl\n", ["wrong"], 300)
    assert rejected.rejected is not None and rejected.rejected.startswith("lean rejected the module: submission:1:")
    assert [p for p in tmp_path.iterdir() if p.name.startswith("leanstep-worker-")] == []
