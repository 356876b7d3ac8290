"""`leanstep setup` / `leanstep doctor` (leanstep.lean_setup, leanstep.doctor) and workspace discovery on fake
workspaces.

Without Lean they must say exactly what to install and fail; with a `lake` on PATH (a
small script standing in for it here, a real one in the `lean` test) they must run it
and find the REPL binary it builds."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from leanstep import doctor
from leanstep import lean_setup as setup
from leanstep import workspace as ws

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN = "leanprover/lean4:v4.33.0-rc2"


@pytest.fixture
def no_lean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment where no `lake` can be found: empty PATH dir, empty HOME."""
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(home))
    for var in ("LEANSTEP_LAKE", "ELAN_HOME"):
        monkeypatch.delenv(var, raising=False)
    return bin_dir


def make_workspace(root: Path, *, mathlib: bool = False, leanstep_dep: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lakefile.lean").write_text("import Lake\nopen Lake DSL\n\npackage demo\n\nlean_lib Demo\n")
    (root / "lean-toolchain").write_text(TOOLCHAIN + "\n")
    packages = []
    if mathlib:
        packages.append({"name": "mathlib", "type": "git", "rev": "0" * 40})
    if leanstep_dep:
        packages += [{"name": "leanstep", "type": "git", "rev": "1" * 40},
                     {"name": "REPL", "type": "git", "rev": "2" * 40}]
    (root / "lake-manifest.json").write_text(json.dumps({"version": "1.1.0", "packages": packages}))
    return root


FAKE_LAKE = """#!/bin/sh
# stands in for lake: records its arguments, "builds" the REPL binary where lake would
PATH="/usr/bin:/bin:$PATH"
echo "$PWD|$*" >> "{log}"
if [ "$1" = "--version" ]; then echo "Lake version 5.0.0 (Lean version 4.33.0-rc2)"; exit 0; fi
[ -n "{fail}" ] && {{ echo "error: build failed" >&2; exit 7; }}
mkdir -p .lake/packages/REPL/.lake/build/bin
printf '#!/bin/sh\\n' > .lake/packages/REPL/.lake/build/bin/repl
chmod +x .lake/packages/REPL/.lake/build/bin/repl
exit 0
"""


def install_fake_lake(bin_dir: Path, log: Path, fail: bool = False) -> Path:
    lake = bin_dir / "lake"
    lake.write_text(FAKE_LAKE.format(log=log, fail="yes" if fail else ""))
    lake.chmod(lake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return lake


# ------------------------------------------------------------------------------ setup without Lean

def test_setup_without_lake_says_what_to_install(no_lean, tmp_path):
    workspace = make_workspace(tmp_path / "proj")
    out = io.StringIO()
    rc = setup.run_setup(workspace, out=out)
    text = out.getvalue()
    assert rc != 0
    assert setup.ELAN_INSTALL in text and "elan" in text
    assert f"leanstep setup --workspace {workspace.resolve()}" in text
    assert not (workspace / ".lake").exists()  # nothing was attempted


def test_setup_rejects_a_directory_that_is_not_a_lake_project(no_lean, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    out = io.StringIO()
    assert setup.run_setup(plain, out=out) == 2
    assert "not a Lake project" in out.getvalue() and "lake new" in out.getvalue()
    out = io.StringIO()
    assert setup.run_setup(tmp_path / "missing", out=out) == 2
    assert "not a directory" in out.getvalue()


# ------------------------------------------------------------------------------ setup with a lake

def test_setup_in_leanstep_itself_runs_lake_build_and_finds_the_repl(no_lean, tmp_path):
    log = tmp_path / "lake.log"
    install_fake_lake(no_lean, log)
    repo = tmp_path / "leanstep"
    repo.mkdir()
    shutil.copy(ROOT / "lakefile.lean", repo / "lakefile.lean")
    shutil.copy(ROOT / "lean-toolchain", repo / "lean-toolchain")
    (repo / "LeanTactic.lean").write_text("import LeanTactic.Frontend\n")
    out = io.StringIO()
    rc = setup.run_setup(repo, out=out)
    assert rc == 0, out.getvalue()
    calls = log.read_text().splitlines()
    assert calls == [f"{repo.resolve()}|build"]
    binary = repo / ".lake/packages/REPL/.lake/build/bin/repl"
    assert ws.find_repl_binary(repo) == binary
    assert str(binary) in out.getvalue()


def test_setup_in_a_project_that_requires_leanstep_builds_tactic_and_repl(no_lean, tmp_path):
    log = tmp_path / "lake.log"
    install_fake_lake(no_lean, log)
    project = make_workspace(tmp_path / "proj", mathlib=True, leanstep_dep=True)
    out = io.StringIO()
    assert setup.run_setup(project, out=out) == 0, out.getvalue()
    assert log.read_text().splitlines() == [f"{project.resolve()}|build LeanTactic REPL/repl"]


def test_setup_reports_a_failed_build(no_lean, tmp_path):
    log = tmp_path / "lake.log"
    install_fake_lake(no_lean, log, fail=True)
    project = make_workspace(tmp_path / "proj", leanstep_dep=True)
    out = io.StringIO()
    rc = setup.run_setup(project, out=out)
    assert rc == 7
    assert "build failed" in out.getvalue()
    assert ws.find_repl_binary(project) is None


def test_find_lake_honours_override_and_elan_home(no_lean, tmp_path, monkeypatch):
    assert ws.find_lake() is None
    elan_home = tmp_path / "elan"
    (elan_home / "bin").mkdir(parents=True)
    lake = install_fake_lake(elan_home / "bin", tmp_path / "log")
    monkeypatch.setenv("ELAN_HOME", str(elan_home))
    assert ws.find_lake() == str(lake)
    monkeypatch.setenv("LEANSTEP_LAKE", str(tmp_path / "nope"))
    assert ws.find_lake() is None  # an override that does not exist is not silently replaced


def test_find_repl_binary_needs_an_executable(tmp_path):
    project = make_workspace(tmp_path / "proj")
    assert ws.find_repl_binary(project) is None
    assert ws.find_repl_binary(None) is None
    binary = project / ".lake/leanstep-repl/.lake/build/bin/repl"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    assert ws.find_repl_binary(project) is None  # not executable
    binary.chmod(0o755)
    assert ws.find_repl_binary(project) == binary


# ------------------------------------------------------------------------------ doctor

@pytest.fixture
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def health_server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"status": "ok", "suggest": True}).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def rows(text: str) -> dict[str, str]:
    """check name -> status column of the doctor's table (columns are separated by 2+ spaces)."""
    out = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 2 and parts[1] in ("ok", "WARN", "FAIL"):
            out[parts[0]] = parts[1]
    return out


def test_doctor_without_lean_fails_with_a_fix_for_each_problem(no_lean, tmp_path, closed_url):
    project = make_workspace(tmp_path / "proj", mathlib=True)
    out = io.StringIO()
    rc = doctor.run_doctor(url=closed_url, workspace=project, model="no-such-org/no-such-model", out=out)
    text = out.getvalue()
    assert rc == 1
    table = rows(text)
    assert table["lake"] == "FAIL"
    assert table["REPL binary"] == "FAIL"
    assert table["server"] == "FAIL"
    assert table["Mathlib"] == "ok" and table["lean-toolchain"] == "ok" and table["workspace"] == "ok"
    assert table["model"] == "WARN"  # not cached: will be downloaded, not an error
    assert "to fix:" in text
    assert setup.ELAN_INSTALL in text
    assert f"leanstep setup --workspace {project}" in text
    assert "leanstep serve" in text


def test_doctor_passes_when_everything_is_there(no_lean, tmp_path, health_server):
    install_fake_lake(no_lean, tmp_path / "lake.log")
    project = make_workspace(tmp_path / "proj", mathlib=True)
    binary = project / ".lake/packages/REPL/.lake/build/bin/repl"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    checks = {c.name: c for c in doctor.doctor_checks(health_server, project, str(model))}
    assert checks["lake"].status == "ok" and "4.33.0-rc2" in checks["lake"].detail
    assert checks["REPL binary"].status == "ok" and checks["REPL binary"].detail == str(binary)
    assert checks["model"].status == "ok"
    assert checks["server"].status == "ok" and "suggestions on" in checks["server"].detail
    assert checks["python: flask"].status == "ok"
    required_failures = [c for c in checks.values() if c.status == "fail"]
    assert required_failures == []


def test_doctor_flags_a_workspace_without_mathlib_and_a_bad_model_dir(tmp_path):
    project = make_workspace(tmp_path / "proj")
    not_a_model = tmp_path / "weights"
    not_a_model.mkdir()
    checks = {c.name: c for c in doctor.doctor_checks(None, project, str(not_a_model))}
    assert checks["Mathlib"].status == "warn" and "require mathlib" in checks["Mathlib"].fix
    assert checks["model"].status == "fail" and "config.json" in checks["model"].detail
    assert checks["server"].status == "warn"
    no_ws = {c.name: c for c in doctor.doctor_checks(None, None, None)}
    assert no_ws["workspace"].status == "warn" and "--workspace" in no_ws["workspace"].fix


# ------------------------------------------------------------------------------ real Lean

@pytest.mark.lean
def test_lake_build_of_this_repository():
    """`lake build` here builds LeanTactic (and the pinned REPL); needs a Lean toolchain."""
    lake = ws.find_lake()
    if lake is None:
        reason = "no `lake` on PATH or in ~/.elan/bin: install elan to run the Lean build test"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    proc = subprocess.run([lake, "build"], cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert ws.find_repl_binary(ROOT) is not None
