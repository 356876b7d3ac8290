"""`leanstep doctor` (leanstep.doctor) and workspace discovery (leanstep.workspace) on fake workspaces.

Without Lean the doctor must say exactly what to install and fail; with a `lake` (the stand-in of
tests/standins here, a real one in the `lean` test) it must find it and the REPL binary. Setting a
workspace up is tests/test_setup.py."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import conftest
import pytest
from standins._standin import install

from leanstep import doctor
from leanstep import lean_setup as setup
from leanstep import workspace as ws
from leanstep.config import load

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


def make_workspace(root: Path, **shape: object) -> Path:
    return conftest.make_workspace(root, toolchain=TOOLCHAIN, **shape)


def install_lake(bin_dir: Path) -> Path:
    """The stand-in lake of tests/standins (it records its calls where ``LEAN_STANDIN_LOG`` says)."""
    return install("lake", bin_dir / "lake", sys.executable)


# ------------------------------------------------------------------------------ discovery

def test_find_lake_honours_override_and_elan_home(no_lean, tmp_path, monkeypatch):
    assert ws.find_lake() is None
    elan_home = tmp_path / "elan"
    (elan_home / "bin").mkdir(parents=True)
    lake = install_lake(elan_home / "bin")
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
    assert ws.find_repl_binary(project) is None  # a standalone REPL counts only for the Lean it was built for
    (project / ".lake/leanstep-repl/lean-toolchain").write_text(TOOLCHAIN + "\n")
    assert ws.find_repl_binary(project) == binary


# ------------------------------------------------------------------------------ doctor

@pytest.fixture
def closed_url(closed_port: int) -> str:
    return f"http://127.0.0.1:{closed_port}"


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
    config = load({"workspace": str(project), "hf_model": "no-such-org/no-such-model"}, environ={})
    rc = doctor.run_doctor(closed_url, config, out=out)
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
    install_lake(no_lean)
    project = make_workspace(tmp_path / "proj", mathlib=True)
    binary = project / ".lake/packages/REPL/.lake/build/bin/repl"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    # the workspace is in a private temporary directory, which no sandboxed REPL could reach: the sandbox's
    # row is tested in test_sandbox.py
    config = load({"workspace": str(project), "hf_model": str(model), "sandbox": "none"}, environ={})
    checks = {c.name: c for c in doctor.doctor_checks(health_server, config)}
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
    checks = {c.name: c for c in doctor.doctor_checks(None, load({"workspace": str(project),
                                                                  "hf_model": str(not_a_model)}, environ={}))}
    assert checks["Mathlib"].status == "warn" and "require mathlib" in checks["Mathlib"].fix
    assert checks["model"].status == "fail" and "config.json" in checks["model"].detail
    assert checks["server"].status == "warn"
    no_ws = {c.name: c for c in doctor.doctor_checks(None, load({}, environ={}))}
    assert no_ws["workspace"].status == "warn" and "--workspace" in no_ws["workspace"].fix


def test_doctor_checks_the_model_of_the_backend_that_is_set(tmp_path):
    def model_row(**settings) -> doctor.Check:
        config = load({"hf_model": "no-such-org/no-such-model", **settings}, environ={})
        return {c.name: c for c in doctor.model_checks(config)}["model"]

    assert model_row(backend="hint").status == "ok"  # --no-model: nothing to load
    script = tmp_path / "proposals.jsonl"
    missing = model_row(backend="scripted", script=str(script))
    assert missing.status == "fail" and str(script) in missing.detail and "--script" in missing.fix
    script.write_text("{}\n")
    assert model_row(backend="scripted", script=str(script)).status == "ok"
    served = model_row(backend="openai", openai_base_url="http://127.0.0.1:8000/v1")
    assert served.status == "ok" and served.detail == "no-such-org/no-such-model at http://127.0.0.1:8000/v1"
    assert model_row(backend="openai").status == "fail"


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
