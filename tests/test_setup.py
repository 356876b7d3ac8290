"""Setting a Lean workspace up (`leanstep setup`, `leanstep serve --setup`, which `make serve` runs), on a fresh
machine played by stand-ins.

The machine has a PATH holding only `python3`, `sh` and `git` (and, where a test says so, the stand-in
`elan-init` of tests/standins), an empty HOME, and a local git repository that plays the Lean REPL's (release
commits tagged by Lean version). The stand-ins record every call in a log, so the tests assert exactly which
steps ran, in order, and that a second run skips the done ones.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import conftest
import pytest
import requests
from conftest import ROOT
from server_fixtures import free_port, spawn_server, stop_server, wait_for_idle_repls
from standins._standin import install

from leanstep import lean_setup as setup
from leanstep import repl_releases as releases
from leanstep import workspace as ws
from leanstep.config import load
from leanstep.repl_releases import ReplRelease

OLD_LEAN = "leanprover/lean4:v4.90.0"  # a Lean newer than the table: found as a tag of the REPL repository
LEANSTEP_LEAN = (ROOT / "lean-toolchain").read_text().strip()


@dataclass
class Machine:
    """A fresh machine: ``bin`` is all of PATH (so no bubblewrap: servers run with ``--sandbox none``); ``log``
    collects the stand-ins' calls; ``repl_repo`` plays the REPL's git repository, with ``tags`` (Lean version ->
    commit) and one untagged commit ``untagged``."""

    root: Path
    bin: Path
    home: Path
    log: Path
    repl_repo: Path
    tags: dict[str, str]
    untagged: str

    def calls(self) -> list[tuple[str, list[str], str]]:
        """(tool, arguments, working directory) of every stand-in call so far."""
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [(e["tool"], e["argv"], e["cwd"]) for e in entries]

    def tools_called(self) -> list[str]:
        return [f"{tool} {' '.join(argv)}".strip() for tool, argv, _ in self.calls()]

    def give_elan_init(self) -> None:
        install("elan-init", self.bin / "elan-init", sys.executable)

    def config(self, workspace: Path, **settings: object):
        return load({"workspace": str(workspace), "repl_repo": self.repl_repo.as_uri(), **settings}, environ={})

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("LEANSTEP_", "ELAN", "LEAN_"))}
        return {**keep, "PATH": str(self.bin), "HOME": str(self.home), "LEAN_STANDIN_LOG": str(self.log)}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def _repl_repository(path: Path) -> tuple[dict[str, str], str]:
    """A git repository shaped like the REPL's: each release commit has a lean-toolchain and a tag named like it."""
    path.mkdir()
    _git(path, "init", "--quiet")
    _git(path, "config", "user.email", "repl@example.org")
    _git(path, "config", "user.name", "REPL")
    (path / "lakefile.toml").write_text('name = "REPL"\ndefaultTargets = ["repl"]\n')
    tags, untagged = {}, ""
    for version, tagged in (("v4.90.0", False), ("v4.90.0", True), ("v4.91.0", True)):
        (path / "lean-toolchain").write_text(f"leanprover/lean4:{version}\n")
        (path / "REPL.lean").write_text(f"-- for {version}, {'tagged' if tagged else 'a fix before the release'}\n")
        _git(path, "add", "-A")
        _git(path, "commit", "--quiet", "-m", f"chore: bump toolchain to {version}")
        commit = _git(path, "rev-parse", "HEAD")
        if tagged:
            _git(path, "tag", version)
            tags[version] = commit
        else:
            untagged = commit
    return tags, untagged


@pytest.fixture(scope="module")
def repl_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    path = tmp_path_factory.mktemp("upstream") / "repl"
    tags, untagged = _repl_repository(path)
    return path, tags, untagged


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repl_repository) -> Machine:
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    for tool in ("git", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    repo, tags, untagged = repl_repository
    m = Machine(tmp_path, bin_dir, home, tmp_path / "calls.jsonl", repo, tags, untagged)
    for name, value in m.env().items():
        monkeypatch.setenv(name, value)
    for var in [v for v in os.environ if v.startswith(("LEANSTEP_", "ELAN"))]:
        monkeypatch.delenv(var)
    return m


def make_workspace(root: Path, *, toolchain: str = OLD_LEAN, **shape: object) -> Path:
    return conftest.make_workspace(root, toolchain=toolchain, **shape)


def run(machine: Machine, workspace: Path, *, install_elan: bool = False, **settings: object) -> tuple[int, str]:
    out = io.StringIO()
    status = setup.run_setup(machine.config(workspace, **settings), out, install_elan=install_elan)
    return status, out.getvalue()


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def give_lake(machine: Machine) -> None:
    """Lean already installed by elan: its lake, lean and elan in ~/.elan/bin, the workspace's Lean not yet."""
    for tool in ("elan", "lake", "lean"):
        install(tool, machine.home / ".elan/bin" / tool, sys.executable)


# ------------------------------------------------------------------------------ a fresh machine, end to end

def test_a_fresh_machine_gets_every_step_in_order_and_a_second_run_skips_them(machine, tmp_path):
    machine.give_elan_init()
    project = make_workspace(tmp_path / "proj", mathlib=True)
    status, text = run(machine, project, install_elan=True)
    assert status == 0, text
    standalone = str(project / ".lake/leanstep-repl")
    assert machine.calls() == [
        ("elan-init", ["-y", "--default-toolchain", "none"], str(project)),
        ("elan", ["toolchain", "list"], str(project)),
        ("elan", ["toolchain", "install", OLD_LEAN], str(project)),
        ("lake", ["build"], standalone),
        ("lake", ["exe", "cache", "get"], str(project)),
        ("lake", ["env", str(project / ws.STANDALONE_REPL_BINARY)], str(project)),
    ]
    for number, title in enumerate(("elan", "Lean leanprover/lean4:v4.90.0", "Lean REPL", "Mathlib", "warm headers"),
                                   start=1):
        assert f"[{number}/5] {title}" in text
    assert "imported `import Mathlib`" in text
    assert _git(project / ".lake/leanstep-repl", "rev-parse", "HEAD") == machine.tags["v4.90.0"]
    assert ws.find_repl_binary(project) == project / ws.STANDALONE_REPL_BINARY
    assert f"ready: leanstep serve --workspace {project}" in text

    machine.log.unlink()
    status, again = run(machine, project, install_elan=True)
    assert status == 0, again
    assert machine.tools_called() == ["elan toolchain list"]  # only the look that says Lean is installed
    assert again.count(": skipped, ") == 5
    assert "skipped, imported before by this REPL build" in again


def test_a_workspace_without_mathlib_skips_the_cache_and_has_no_header_to_warm(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    status, text = run(machine, project)
    assert status == 0, text
    assert "lake exe cache get" not in " ".join(machine.tools_called())
    assert "[4/5] Mathlib's compiled files: skipped, the workspace does not use Mathlib" in text
    assert "[5/5] warm headers: skipped, no headers to warm" in text


def test_a_new_repl_build_imports_the_headers_again(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", mathlib=True)
    assert run(machine, project)[0] == 0
    binary = project / ws.STANDALONE_REPL_BINARY
    os.utime(binary, ns=(binary.stat().st_atime_ns, binary.stat().st_mtime_ns + 10**9))
    machine.log.unlink()
    status, text = run(machine, project)
    assert status == 0, text
    assert machine.tools_called()[-1] == f"lake env {binary}"


# ------------------------------------------------------------------------------ elan

def test_without_lake_and_without_leave_to_install_it_one_line_says_how(machine, tmp_path):
    machine.give_elan_init()
    project = make_workspace(tmp_path / "proj")
    status, text = run(machine, project, install_elan=False)
    assert status == 3
    (line,) = error_lines(text)
    assert setup.ELAN_INSTALL in line and "--install-elan" in line
    assert machine.calls() == []  # nothing was installed or built
    assert not (project / ".lake").exists()


def test_a_failing_elan_installer_is_one_line_and_nothing_else_runs(machine, tmp_path):
    machine.give_elan_init()
    project = make_workspace(tmp_path / "proj", directives="-- standin: elan-init-fail")
    status, text = run(machine, project, install_elan=True)
    assert status == 1
    (line,) = error_lines(text)
    assert "elan's installer failed (exit 1" in line and setup.ELAN_INSTALL in line
    assert machine.tools_called() == ["elan-init -y --default-toolchain none"]


class _Installer(BaseHTTPRequestHandler):
    """Serves ``script`` at any path and records the paths asked for in ``fetched``."""

    script = b""
    fetched: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).fetched.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.script)))
        self.end_headers()
        self.wfile.write(self.script)


def test_without_elan_init_on_path_the_official_script_is_downloaded_and_run(machine, tmp_path):
    """The script (here served locally) is run with `sh SCRIPT -y --default-toolchain none`, as the official
    one-liner pipes it to `sh -s -- ...`; this one hands over to the stand-in installer."""
    elan_init = install("elan-init", tmp_path / "installer" / "elan-init", sys.executable)
    _Installer.script = f'#!/bin/sh\nexec "{elan_init}" "$@"\n'.encode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Installer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        project = make_workspace(tmp_path / "proj")
        status, text = run(machine, project, install_elan=True,
                           elan_installer=f"http://127.0.0.1:{httpd.server_address[1]}/elan-init.sh")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert status == 0, text
    assert _Installer.fetched == ["/elan-init.sh"]
    assert machine.tools_called()[0] == "elan-init -y --default-toolchain none"
    assert ws.find_lake() == str(machine.home / ".elan/bin/lake")


def test_an_unreachable_installer_is_one_line(machine, tmp_path):
    closed = free_port()
    project = make_workspace(tmp_path / "proj")
    status, text = run(machine, project, install_elan=True, elan_installer=f"http://127.0.0.1:{closed}/elan-init.sh")
    assert status == 3
    (line,) = error_lines(text)
    assert "could not download elan's installer" in line and setup.ELAN_INSTALL in line


def test_a_toolchain_elan_cannot_install_is_one_line(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", directives="-- standin: toolchain-fail")
    status, text = run(machine, project)
    assert status == 1
    (line,) = error_lines(text)
    assert f"elan could not install {OLD_LEAN}" in line and "lean-toolchain" in line
    assert not any(call.startswith("lake") for call in machine.tools_called())


# ------------------------------------------------------------------------------ the REPL for the workspace's Lean

def test_leanstep_itself_builds_its_pinned_repl(machine, tmp_path):
    give_lake(machine)
    repo = tmp_path / "leanstep"
    repo.mkdir()
    shutil.copy(ROOT / "lakefile.lean", repo / "lakefile.lean")
    shutil.copy(ROOT / "lean-toolchain", repo / "lean-toolchain")
    (repo / "LeanTactic.lean").write_text("import LeanTactic.Frontend\n")
    status, text = run(machine, repo)
    assert status == 0, text
    assert [c for c in machine.calls() if c[0] == "lake"] == [("lake", ["build", "REPL/repl"], str(repo)),
                                                               ("lake", ["build", "LeanTactic"], str(repo))]
    assert ws.find_repl_binary(repo) == repo / ws.DEPENDENCY_REPL_BINARY


def test_leanstep_itself_is_served_even_when_the_tactic_does_not_compile(machine, tmp_path):
    give_lake(machine)
    repo = tmp_path / "leanstep"
    repo.mkdir()
    (repo / "lakefile.lean").write_text("-- standin: tactic-fail\n" + (ROOT / "lakefile.lean").read_text())
    shutil.copy(ROOT / "lean-toolchain", repo / "lean-toolchain")
    (repo / "LeanTactic.lean").write_text("import LeanTactic.Frontend\n")
    status, text = run(machine, repo)
    assert status == 0, text
    assert "note: the llmstep tactic did not build" in text and "The server does not need it" in text
    assert ws.find_repl_binary(repo) == repo / ws.DEPENDENCY_REPL_BINARY


def test_a_project_on_leanstep_s_lean_builds_the_tactic_and_the_pinned_repl(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", toolchain=LEANSTEP_LEAN, leanstep_dep=True)
    status, text = run(machine, project)
    assert status == 0, text
    assert [c for c in machine.calls() if c[0] == "lake"] == [("lake", ["build", "REPL/repl"], str(project)),
                                                               ("lake", ["build", "LeanTactic"], str(project))]


def test_a_project_on_another_lean_gets_the_repl_release_for_that_lean(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", leanstep_dep=True)
    status, text = run(machine, project)
    assert status == 0, text
    lake_calls = [c for c in machine.calls() if c[0] == "lake"]
    assert lake_calls == [("lake", ["build"], str(project / ".lake/leanstep-repl")),
                          ("lake", ["build", "LeanTactic"], str(project))]
    checkout = project / ".lake/leanstep-repl"
    assert _git(checkout, "rev-parse", "HEAD") == machine.tags["v4.90.0"]
    assert (checkout / "lean-toolchain").read_text().strip() == OLD_LEAN
    assert "tag v4.90.0" in text


def test_a_tactic_that_does_not_build_on_an_older_lean_does_not_stop_the_server_s_set_up(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", leanstep_dep=True, directives="-- standin: tactic-fail")
    status, text = run(machine, project)
    assert status == 0, text
    assert "the llmstep tactic did not build with leanprover/lean4:v4.90.0" in text
    assert ws.find_repl_binary(project) == project / ws.STANDALONE_REPL_BINARY


def test_a_project_without_leanstep_is_told_how_to_add_the_tactic(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    status, text = run(machine, project)
    assert status == 0, text
    assert f'require leanstep from "{ws.LEANSTEP_ROOT}"' in text
    assert "LeanTactic" not in " ".join(machine.tools_called())


def test_the_table_s_commit_is_what_is_fetched(machine, tmp_path):
    """A table entry names a commit; it is fetched by commit even where a tag of that name points elsewhere."""
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    table = (ReplRelease("v4.90.0", machine.untagged, None, "2026-01-01"),)
    out = io.StringIO()
    status = setup.run_setup(machine.config(project), out, releases=table)
    assert status == 0, out.getvalue()
    assert _git(project / ".lake/leanstep-repl", "rev-parse", "HEAD") == machine.untagged
    assert "untagged commit" in out.getvalue()


def test_a_lean_with_no_repl_release_is_one_line_and_nothing_is_fetched(machine, tmp_path):
    give_lake(machine)
    for toolchain in ("leanprover/lean4:v4.99.0", "leanprover/lean4:nightly-2026-01-01"):
        project = make_workspace(tmp_path / toolchain.rpartition(":")[2], toolchain=toolchain)
        status, text = run(machine, project)
        assert status == 4, text
        (line,) = error_lines(text)
        assert f"no Lean REPL release for {toolchain}" in line
        assert releases.supported_range() in line and "--repl" in line
        assert not (project / ".lake/leanstep-repl/.git").exists()


def test_an_unreachable_repl_repository_is_one_line(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    table = (ReplRelease("v4.90.0", "f" * 40, "v4.90.0", "2026-01-01"),)
    out = io.StringIO()
    status = setup.run_setup(machine.config(project, repl_repo=(tmp_path / "nowhere").as_uri()), out, releases=table)
    assert status == 3
    (line,) = error_lines(out.getvalue())
    assert "could not fetch the REPL (tag v4.90.0 ffffffffffff" in line and "--repl-repo" in line


def test_a_failed_build_is_one_line_with_lake_s_exit_status(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", toolchain=LEANSTEP_LEAN, leanstep_dep=True,
                             directives="-- standin: build-fail 7")
    status, text = run(machine, project)
    assert status == 7
    (line,) = error_lines(text)
    assert "`lake build REPL/repl` failed" in line and "exit 7" in line
    assert ws.find_repl_binary(project) is None


def test_a_repl_built_for_another_lean_is_not_used_and_is_rebuilt(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    assert run(machine, project)[0] == 0
    (project / "lean-toolchain").write_text("leanprover/lean4:v4.91.0\n")
    assert ws.find_repl_binary(project) is None  # built for v4.90.0
    machine.log.unlink()
    status, text = run(machine, project)
    assert status == 0, text
    assert _git(project / ".lake/leanstep-repl", "rev-parse", "HEAD") == machine.tags["v4.91.0"]
    assert ws.find_repl_binary(project) == project / ws.STANDALONE_REPL_BINARY


# ------------------------------------------------------------------------------ Mathlib and the warm headers

def test_a_failed_cache_download_is_one_line(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj", mathlib=True, directives="-- standin: cache-fail")
    status, text = run(machine, project)
    assert status == 1
    (line,) = error_lines(text)
    assert "`lake exe cache get` failed" in line and "network" in line
    assert "lake env" not in " ".join(machine.tools_called())  # no warm-up after a failed step


def test_mathlib_is_recognised_from_the_lakefile_before_dependencies_are_fetched(tmp_path):
    project = make_workspace(tmp_path / "proj", mathlib=True)
    (project / "lake-manifest.json").unlink()
    assert ws.workspace_has_mathlib(project)
    assert not ws.workspace_has_mathlib(make_workspace(tmp_path / "plain"))


def test_a_header_that_does_not_import_is_one_line_with_lean_s_message(machine, tmp_path):
    give_lake(machine)
    project = make_workspace(tmp_path / "proj")
    status, text = run(machine, project, warm_headers="import Nonexistent.Module")
    assert status == 1
    (line,) = error_lines(text)
    assert "`import Nonexistent.Module` does not import" in line and "unknown module prefix" in line
    assert "lake build" in line
    assert not (project / setup.WARM_STAMP).exists()


# ------------------------------------------------------------------------------ the table of REPL releases

def test_lean_release_names():
    assert releases.lean_release("leanprover/lean4:v4.9.0") == "v4.9.0"
    assert releases.lean_release("leanprover/lean4:v4.22.0-rc4\n") == "v4.22.0-rc4"
    assert releases.lean_release("v4.9.0") == "v4.9.0"
    assert releases.lean_release("leanprover/lean4:4.9.0") == "v4.9.0"
    for other in ("leanprover/lean4:nightly-2024-01-01", "stable", "leanprover/lean4-pr-releases:pr-release-1234",
                  "someone/lean4:v4.9.0", ""):
        assert releases.lean_release(other) is None, other


def test_the_table_is_ordered_unique_and_names_commits():
    table = releases.REPL_RELEASES
    assert len(table) >= 60
    assert len({r.lean for r in table}) == len(table)
    keys = [releases._release_key(r.lean) for r in table]
    assert keys == sorted(keys)
    assert all(len(r.commit) == 40 and int(r.commit, 16) >= 0 for r in table)
    assert all(r.tag == r.lean for r in table if r.tag is not None)
    assert releases.find_release("leanprover/lean4:v4.9.0").commit == "d920817f334e1d8d27c8ca35e52c736a8c8818b0"
    assert releases.find_release("leanprover/lean4:v4.11.0").tag is None  # a release the REPL never tagged
    assert releases.find_release("leanprover/lean4:v4.12.0") is None  # a release the REPL skipped


def test_leanstep_s_pinned_repl_is_the_table_s_release_for_leanstep_s_lean():
    lakefile = (ROOT / "lakefile.lean").read_text()
    release = releases.find_release(LEANSTEP_LEAN)
    assert release is not None
    assert f'require REPL from git "https://github.com/leanprover-community/repl" @ "{release.commit}"' in lakefile


def test_derive_reads_tags_and_the_untagged_releases_of_the_main_branch(repl_repository, tmp_path):
    repo, tags, _ = repl_repository
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    (clone / "lean-toolchain").write_text("leanprover/lean4:v4.92.0\n")  # a release on the branch, never tagged
    _git(clone, "-c", "user.email=x@example.org", "-c", "user.name=x", "commit", "--quiet", "-am", "bump")
    untagged = _git(clone, "rev-parse", "HEAD")
    derived = releases.derive(clone)
    assert [(r.lean, r.commit, r.tag) for r in derived] == [
        ("v4.90.0", tags["v4.90.0"], "v4.90.0"), ("v4.91.0", tags["v4.91.0"], "v4.91.0"), ("v4.92.0", untagged, None)]
    printed = subprocess.run([sys.executable, "-m", "leanstep.repl_releases", "derive", str(clone)],
                             capture_output=True, text=True, check=True).stdout
    assert printed.startswith("REPL_RELEASES: tuple[ReplRelease, ...] = (")
    assert f"ReplRelease('v4.92.0', '{untagged}', None," in printed


# ------------------------------------------------------------------------------ `leanstep serve --setup` (make serve)

def _serve(machine: Machine, log_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    return spawn_server(log_path, "--setup", "--no-model", "--max-repls", "1", *args, env=machine.env())


def test_make_serve_passes_setup():
    dry = subprocess.run(["make", "-n", "serve", "WORKSPACE=/some/project", "ARGS=--port 7000"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "leanstep serve --setup --workspace /some/project --port 7000" in dry


def test_serve_setup_with_the_simulated_repl_needs_no_lean_and_no_network(machine, tmp_path):
    machine.give_elan_init()  # there, so a call to it would be recorded
    proc, url = _serve(machine, tmp_path / "serve.log", "--repl", "sim", "--sandbox", "none", "--allow-root-repl")
    try:
        wait_for_idle_repls(proc, url, 0, tmp_path / "serve.log")
        assert requests.get(url + "/health", timeout=5).status_code == 200
    finally:
        stop_server(proc)
    assert machine.calls() == []
    assert "[1/5]" not in (tmp_path / "serve.log").read_text()


def test_serve_setup_on_a_fresh_machine_sets_up_then_serves_and_the_next_start_skips_it(machine, tmp_path):
    machine.give_elan_init()
    project = make_workspace(tmp_path / "proj", mathlib=True)
    flags = ("--workspace", str(project), "--repl-repo", machine.repl_repo.as_uri(), "--sandbox", "none",
             "--allow-root-repl")
    for attempt in ("first", "second"):
        log_path = tmp_path / f"serve-{attempt}.log"
        proc, url = _serve(machine, log_path, *flags)
        try:
            wait_for_idle_repls(proc, url, 1, log_path, timeout=120)
            code = "import Mathlib\n\ntheorem t : 1 + 1 = 2 := by norm_num"
            reply = requests.post(url + "/verify", json={"codes": [{"custom_id": "x", "proof": code}]},
                                  timeout=60).json()
            assert reply["results"][0]["verdict"] == "valid", reply
        finally:
            stop_server(proc)
        text = log_path.read_text()
        if attempt == "first":
            assert [t.split()[0] for t in machine.tools_called()][:5] == ["elan-init", "elan", "elan", "lake", "lake"]
            assert "[5/5] warm headers: imported `import Mathlib`" in text
            machine.log.unlink()
        else:
            assert text.count(": skipped, ") == 5, text
            called = machine.tools_called()
            assert "elan-init -y --default-toolchain none" not in called
            assert not any(c.startswith(("lake build", "lake exe", "elan toolchain install")) for c in called)
            assert called[0] == "elan toolchain list"
