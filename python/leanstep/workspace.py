"""Lean workspace set-up and diagnosis: ``leanstep setup`` and ``leanstep doctor``.

``run_setup`` builds what the server needs in a Lean project: the REPL binary
(built with the project's own toolchain, since a REPL can only import ``.olean``
files of the Lean version it was built with) and, where the project depends on
leanstep, the ``LeanTactic`` library. Where Lean is not installed it says what
to install and returns non-zero; it never installs a toolchain itself.

``run_doctor`` checks every piece a working set-up needs and prints a table with
a fix for each problem.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

REPL_REPO = "https://github.com/leanprover-community/repl"
ELAN_INSTALL = "curl https://elan.lean-lang.org/elan-init.sh -sSf | sh"
# Where a REPL binary lands: as the `REPL` dependency (lake lower-cases nothing, but accept both
# spellings), as the workspace's own build, or as the standalone checkout `run_setup` makes.
STANDALONE_REPL_DIR = Path(".lake") / "leanstep-repl"
LEANSTEP_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding lakefile.lean and LeanTactic/
REPL_BINARY_CANDIDATES = (
    Path(".lake/packages/REPL/.lake/build/bin/repl"),
    Path(".lake/packages/repl/.lake/build/bin/repl"),
    Path(".lake/build/bin/repl"),
    STANDALONE_REPL_DIR / ".lake/build/bin/repl",
)
SETUP_TIMEOUT_S = 4 * 3600  # a first Mathlib-sized build can take hours; never hang forever

__all__ = [
    "Check", "find_lake", "find_repl_binary", "read_toolchain", "workspace_has_mathlib",
    "workspace_depends_on", "run_setup", "run_doctor", "doctor_checks",
]


def find_lake() -> str | None:
    """Path of ``lake``: ``$LEANSTEP_LAKE``, then PATH, then elan's default ``~/.elan/bin/lake``."""
    override = os.environ.get("LEANSTEP_LAKE", "").strip()
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    found = shutil.which("lake")
    if found:
        return found
    elan_lake = Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan") / "bin" / "lake"
    if elan_lake.is_file() and os.access(elan_lake, os.X_OK):
        return str(elan_lake)
    return None


def find_repl_binary(workspace: Path | None) -> Path | None:
    """The REPL executable built for ``workspace``, or None."""
    if workspace is None:
        return None
    for candidate in REPL_BINARY_CANDIDATES:
        path = Path(workspace) / candidate
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def read_toolchain(workspace: Path) -> str | None:
    """The ``lean-toolchain`` line, e.g. ``leanprover/lean4:v4.33.0-rc2``, or None."""
    try:
        text = (Path(workspace) / "lean-toolchain").read_text().strip()
    except OSError:
        return None
    return text.splitlines()[0].strip() if text else None


def _manifest_packages(workspace: Path) -> list[dict]:
    try:
        packages = json.loads((Path(workspace) / "lake-manifest.json").read_text()).get("packages", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [p for p in packages if isinstance(p, dict)]


def workspace_depends_on(workspace: Path, package: str) -> bool:
    """Whether ``lake-manifest.json`` lists ``package`` (case-insensitive)."""
    return any(str(p.get("name", "")).lower() == package.lower() for p in _manifest_packages(workspace))


def workspace_has_mathlib(workspace: Path) -> bool:
    return workspace_depends_on(workspace, "mathlib")


def _is_leanstep_itself(workspace: Path) -> bool:
    lakefile = Path(workspace) / "lakefile.lean"
    try:
        text = lakefile.read_text()
    except OSError:
        return False
    return (Path(workspace) / "LeanTactic.lean").is_file() and re.search(r"^\s*package\s+leanstep\b", text, re.M) is not None


def _has_lakefile(workspace: Path) -> bool:
    return (Path(workspace) / "lakefile.lean").is_file() or (Path(workspace) / "lakefile.toml").is_file()


def _toolchain_tag(toolchain: str) -> str | None:
    """``leanprover/lean4:v4.33.0-rc2`` -> ``v4.33.0-rc2`` (the REPL tags its releases so)."""
    match = re.search(r"(v\d+\.\d+\.\d+(?:-rc\d+)?)\s*$", toolchain)
    return match.group(1) if match else None


def _run(cmd: Sequence[str], cwd: Path, out: TextIO) -> int:
    print(f"$ (cd {cwd} && {' '.join(cmd)})", file=out, flush=True)
    try:
        return subprocess.run(list(cmd), cwd=cwd, timeout=SETUP_TIMEOUT_S).returncode
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=out)
        return 127
    except subprocess.TimeoutExpired:
        print(f"error: `{' '.join(cmd)}` ran longer than {SETUP_TIMEOUT_S} s", file=out)
        return 124


def _print_install_lean(workspace: Path, out: TextIO) -> None:
    print(
        "error: `lake` (Lean's build tool) was not found on PATH or in ~/.elan/bin.\n"
        "Install elan, the Lean toolchain manager, which provides `lean` and `lake`:\n"
        f"    {ELAN_INSTALL}\n"
        "(Windows: see https://github.com/leanprover/elan#installation)\n"
        "then open a new shell (or run `source ~/.elan/env`) and rerun:\n"
        f"    leanstep setup --workspace {workspace}\n"
        "elan installs the toolchain named in the project's lean-toolchain file on first use.",
        file=out,
    )


def _setup_standalone_repl(workspace: Path, lake: str, toolchain: str, out: TextIO) -> int:
    """Clone the REPL next to the workspace and build it with the workspace's toolchain."""
    git = shutil.which("git")
    if git is None:
        print("error: `git` is needed to fetch the Lean REPL; install git and rerun", file=out)
        return 3
    target = workspace / STANDALONE_REPL_DIR
    if not (target / "lakefile.toml").exists() and not (target / "lakefile.lean").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tag = _toolchain_tag(toolchain)
        rc = 1
        if tag:
            rc = _run([git, "clone", "--depth", "1", "--branch", tag, REPL_REPO, str(target)], workspace, out)
        if rc != 0:
            print(f"note: no REPL release tagged {tag or '(unknown)'}; using its default branch, which may "
                  "not build with this toolchain", file=out)
            shutil.rmtree(target, ignore_errors=True)
            rc = _run([git, "clone", "--depth", "1", REPL_REPO, str(target)], workspace, out)
            if rc != 0:
                return rc
    # The REPL must be built by exactly the workspace's Lean version.
    (target / "lean-toolchain").write_text(toolchain + "\n")
    return _run([lake, "build"], target, out)


def run_setup(workspace: Path, out: TextIO | None = None) -> int:
    """Build the REPL (and the llmstep tactic where available) for ``workspace``. 0 on success."""
    out = out or sys.stdout
    workspace = Path(workspace).resolve()
    if not workspace.is_dir():
        print(f"error: {workspace} is not a directory", file=out)
        return 2
    if not _has_lakefile(workspace):
        print(f"error: {workspace} is not a Lake project (no lakefile.lean or lakefile.toml).\n"
              "Create one with `lake new myproject math` (Mathlib) or `lake new myproject`, "
              "then rerun `leanstep setup --workspace <that directory>`.", file=out)
        return 2
    lake = find_lake()
    if lake is None:
        _print_install_lean(workspace, out)
        return 3
    toolchain = read_toolchain(workspace)
    print(f"workspace: {workspace}\ntoolchain: {toolchain or '(no lean-toolchain file: elan default)'}",
          file=out, flush=True)

    if _is_leanstep_itself(workspace):
        # default targets: the LeanTactic library and the pinned REPL dependency's binary
        rc = _run([lake, "build"], workspace, out)
    elif workspace_depends_on(workspace, "leanstep"):
        rc = _run([lake, "build", "LeanTactic", "REPL/repl"], workspace, out)
    else:
        print("note: this project does not depend on leanstep, so the `llmstep` tactic is not built.\n"
              "To use it, add to lakefile.lean (the path of your leanstep checkout):\n"
              f'    require leanstep from "{LEANSTEP_ROOT}"\n'
              "or to lakefile.toml:\n"
              f'    [[require]]\n    name = "leanstep"\n    path = "{LEANSTEP_ROOT}"\n'
              "then run `lake update leanstep` and rerun setup. Building a standalone REPL for the server now.",
              file=out)
        if toolchain is None:
            print("error: no lean-toolchain file: cannot tell which Lean version the REPL must match", file=out)
            return 2
        rc = _setup_standalone_repl(workspace, lake, toolchain, out)
    if rc != 0:
        print(f"error: the build failed (exit {rc}); see the output above", file=out)
        return rc
    binary = find_repl_binary(workspace)
    if binary is None:
        print("error: the build finished but no REPL binary was found at "
              + ", ".join(str(workspace / c) for c in REPL_BINARY_CANDIDATES), file=out)
        return 1
    print(f"REPL binary: {binary}\nready: leanstep serve --workspace {workspace}", file=out)
    return 0


# ---------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table. ``status`` is ok, warn or fail; ``fix`` says what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _python_dep(module: str, required: bool, purpose: str) -> Check:
    if importlib.util.find_spec(module) is None:
        return Check(f"python: {module}", "fail" if required else "warn", f"not installed ({purpose})",
                     f"{sys.executable} -m pip install {module}")
    try:
        version = importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Check(f"python: {module}", "ok", version)


def _lake_check() -> Check:
    lake = find_lake()
    if lake is None:
        return Check("lake", "fail", "not found on PATH or in ~/.elan/bin", f"install elan: {ELAN_INSTALL}")
    try:
        proc = subprocess.run([lake, "--version"], capture_output=True, text=True, timeout=60)
        version = (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else lake
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("lake", "fail", f"{lake} does not run: {exc}", "reinstall elan: " + ELAN_INSTALL)
    return Check("lake", "ok", version)


def _workspace_checks(workspace: Path | None) -> list[Check]:
    if workspace is None:
        return [Check("workspace", "warn", "none given", "pass --workspace DIR or set LEANSTEP_WORKSPACE "
                                                        "(without one only --repl sim works)")]
    workspace = Path(workspace)
    if not workspace.is_dir():
        return [Check("workspace", "fail", f"{workspace} does not exist", "pass the path of a Lake project")]
    if not _has_lakefile(workspace):
        return [Check("workspace", "fail", f"{workspace} has no lakefile.lean or lakefile.toml",
                      "create a project with `lake new NAME math`, or pass an existing one")]
    checks = [Check("workspace", "ok", str(workspace))]
    toolchain = read_toolchain(workspace)
    checks.append(Check("lean-toolchain", "ok", toolchain) if toolchain else
                  Check("lean-toolchain", "warn", "missing: elan's default toolchain is used",
                        f"echo leanprover/lean4:<version> > {workspace / 'lean-toolchain'}"))
    if not (workspace / "lake-manifest.json").is_file():
        checks.append(Check("Mathlib", "warn", "no lake-manifest.json (dependencies not fetched)",
                            f"cd {workspace} && lake update"))
    elif workspace_has_mathlib(workspace):
        checks.append(Check("Mathlib", "ok", "in lake-manifest.json"))
    else:
        checks.append(Check("Mathlib", "warn", "not a dependency: `import Mathlib` will not resolve",
                            "add `require mathlib from git \"https://github.com/leanprover-community/mathlib4\"` "
                            "and run `lake update`"))
    binary = find_repl_binary(workspace)
    checks.append(Check("REPL binary", "ok", str(binary)) if binary else
                  Check("REPL binary", "fail", "not built for this workspace",
                        f"leanstep setup --workspace {workspace}"))
    return checks


def _hf_cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path.home() / ".cache" / "huggingface" / "hub")
    return dirs


def _model_check(model: str | None) -> Check:
    if not model:
        return Check("model", "warn", "none configured", "pass --hf-model PATH_OR_ID (or serve with --no-model)")
    path = Path(model).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return Check("model", "ok", f"local: {path}")
        return Check("model", "fail", f"{path} has no config.json (not a transformers model directory)",
                     "point --hf-model at the directory that holds config.json and the weights")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        cached = [d / f"models--{model.replace('/', '--')}" for d in _hf_cache_dirs()]
        if any(c.is_dir() for c in cached):
            return Check("model", "ok", f"{model} (in the local Hugging Face cache)")
        return Check("model", "warn", f"{model} is not in the local cache: downloaded on first start",
                     f"pre-fetch it where the network allows: huggingface-cli download {model}")
    return Check("model", "fail", f"{model} is neither a directory nor an ORG/NAME model id",
                 "pass an existing model directory or a hub id like ORG/NAME")


def _server_check(url: str | None) -> Check:
    if not url:
        return Check("server", "warn", "no URL given", "pass --url http://HOST:PORT")
    health = url.rstrip("/") + "/health"
    try:
        import requests

        resp = requests.get(health, timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        return Check("server", "fail", f"not reachable at {url} ({type(exc).__name__})",
                     "start it: leanstep serve --workspace DIR (or make serve)")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    status = body.get("status") if isinstance(body, dict) else None
    if resp.status_code != 200:
        return Check("server", "fail", f"{health} answered HTTP {resp.status_code} ({status or 'no status'})",
                     "see the server's log")
    suggest = body.get("suggest") if isinstance(body, dict) else None
    detail = f"{url}: {status or 'ok'}" + ("" if suggest is None else f", suggestions {'on' if suggest else 'off'}")
    return Check("server", "ok" if status in (None, "ok", "starting") else "warn", detail)


def doctor_checks(url: str | None, workspace: Path | None, model: str | None) -> list[Check]:
    """Every check ``leanstep doctor`` runs, in display order."""
    checks = [
        Check("python", "ok" if sys.version_info >= (3, 10) else "fail", sys.version.split()[0],
              "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer"),
        _python_dep("flask", True, "the HTTP server"),
        _python_dep("waitress", True, "the production WSGI server"),
        _python_dep("transformers", True, "Hugging Face models"),
        _python_dep("torch", False, "needed to run models locally with --hf-model"),
        _lake_check(),
    ]
    checks += _workspace_checks(workspace)
    checks.append(_model_check(model))
    checks.append(_server_check(url))
    return checks


def format_table(checks: Sequence[Check]) -> str:
    """The doctor's table, then one ``fix`` line per problem."""
    marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.name.ljust(width)}  {marks.get(c.status, c.status).ljust(6)}  {c.detail}" for c in checks]
    problems = [c for c in checks if c.status != "ok" and c.fix]
    if problems:
        lines += ["", "to fix:"]
        lines += [f"  {c.name}: {c.fix}" for c in problems]
    return "\n".join(lines)


def run_doctor(url: str | None, workspace: Path | None, model: str | None, out: TextIO | None = None,
               extra: Sequence[Check] = ()) -> int:
    """Print the checks (``extra``: rows from layers above, such as the sandbox); 0 when nothing failed."""
    out = out or sys.stdout
    checks = doctor_checks(url, Path(workspace) if workspace is not None else None, model) + list(extra)
    print(format_table(checks), file=out)
    failed = [c for c in checks if c.status == "fail"]
    print("", file=out)
    print(f"{len(failed)} problem(s) found" if failed else "all required checks passed", file=out)
    return 1 if failed else 0
