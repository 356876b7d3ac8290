"""``leanstep doctor``: check every piece a working set-up needs, with a fix for each problem.

Python packages, ``lake``, the workspace and its REPL binary, the model of the
backend that is set (``--hf-model`` for hf and vllm, the ``--gguf`` file and
llama-cpp-python for llamacpp, the ``--script`` of scripted), a running
server, and the sandbox the server would use (mode, and whether REPLs would
run unprivileged).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from leanstep.config import Config
from leanstep.generate import configured_model
from leanstep.lean_setup import ELAN_INSTALL
from leanstep.repl.launch import SetupError, repl_command, sandbox_plan
from leanstep.repl.sandbox import SandboxError, SandboxPolicy
from leanstep.workspace import find_lake, find_repl_binary, has_lakefile, read_toolchain, workspace_has_mathlib


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table. ``status`` is ok, warn or fail; ``fix`` says what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _python_dep(module: str, required: bool, purpose: str, package: str | None = None, fix: str = "") -> Check:
    """Whether ``module`` imports (``package``: its name on PyPI, when that differs)."""
    if importlib.util.find_spec(module) is None:
        return Check(f"python: {module}", "fail" if required else "warn", f"not installed ({purpose})",
                     fix or f"{sys.executable} -m pip install {package or module}")
    try:
        version = importlib.metadata.version(package or module)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Check(f"python: {module}", "ok", version)


def _lake_check() -> Check:
    lake = find_lake()
    if lake is None:
        return Check("lake", "fail", "not found on PATH or in ~/.elan/bin", f"install elan: {ELAN_INSTALL}")
    try:
        proc = subprocess.run([lake, "--version"], capture_output=True, text=True, timeout=60, check=False)
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
    if not has_lakefile(workspace):
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


def _hf_model_check(model: str) -> Check:
    """A transformers model (backends hf and vllm): a local directory with config.json, or a hub id."""
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


GGUF_MAGIC = b"GGUF"


def _gguf_check(path: Path) -> Check:
    """The llamacpp backend's model: a readable file that starts with the GGUF magic."""
    fix = "pass --gguf FILE, a GGUF model file (llama.cpp's convert_hf_to_gguf.py writes one from a hub model)"
    if not path.is_file():
        return Check("model", "fail", f"GGUF file {path} does not exist" if not path.exists() else
                     f"{path} is not a file", fix)
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        return Check("model", "fail", f"GGUF file {path} cannot be read: {exc}", f"make it readable: chmod +r {path}")
    if magic != GGUF_MAGIC:
        return Check("model", "fail", f"{path} is not a GGUF file (it does not start with {GGUF_MAGIC!r})", fix)
    return Check("model", "ok", f"GGUF: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def model_checks(config: Config) -> list[Check]:
    """The rows of the model that ``config``'s backend runs (``generate.configured_model``), and of the package
    that backend needs when it is not installed with leanstep."""
    backend = config.backend
    if backend == "hint":
        return [Check("model", "ok", "none: the hint backend suggests a fixed list of tactics (--no-model)")]
    if backend == "scripted":
        script = config.script
        if script is None or not script.is_file():
            return [Check("model", "fail", f"scripted backend: proposals file {script} does not exist",
                          "pass --script FILE (JSON lines of proposals)")]
        return [Check("model", "ok", f"scripted: proposals from {script}")]
    model = configured_model(config)
    if backend == "openai":
        where = config.openai_base_url or "no --openai-base-url"
        return [Check("model", "ok" if config.openai_base_url else "fail", f"{model} at {where}",
                      "" if config.openai_base_url else "pass --openai-base-url URL (an OpenAI-compatible server)")]
    if backend == "llamacpp":
        return [_gguf_check(Path(model).expanduser()),
                _python_dep("llama_cpp", True, "the llamacpp backend", "llama-cpp-python",
                            "make llamacpp (or pip install 'leanstep[llamacpp]')")]
    checks = [_hf_model_check(model)]
    if backend == "vllm":
        checks.append(_python_dep("vllm", True, "the vllm backend"))
    return checks


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


def sandbox_check(config: Config) -> Check:
    """The doctor's row: the mode that will be used, whether REPLs run unprivileged, and the fix if not."""
    try:
        repl_command(config)
    except SetupError as exc:
        mode = config.sandbox
        with suppress(SandboxError):  # a mode this machine cannot give: show the one asked for
            mode = SandboxPolicy(config.sandbox).resolved_mode()
        return Check("sandbox", "warn", f"{mode}; whether REPLs run unprivileged depends on the REPL, "
                                        "which is not configured yet", str(exc))
    try:
        plan = sandbox_plan(config)
    except SetupError as exc:
        return Check("sandbox", "fail", "REPLs would run as root: the server refuses to start", str(exc))
    if plan.mode == "none":
        return Check("sandbox", "warn", plan.describe(),
                     "drop --sandbox none (install bubblewrap for the strongest mode)")
    if not plan.unprivileged:
        return Check("sandbox", "warn", plan.describe(), "make the REPL readable by others and drop --allow-root-repl")
    if plan.mode == "rlimit":
        return Check("sandbox", "warn", plan.describe(), "install bubblewrap (apt-get install bubblewrap)")
    return Check("sandbox", "ok", plan.describe())


def doctor_checks(url: str | None, config: Config) -> list[Check]:
    """Every check ``leanstep doctor`` runs for ``config`` (its workspace, model and sandbox), in display order."""
    checks = [
        Check("python", "ok" if sys.version_info >= (3, 10) else "fail", sys.version.split()[0],
              "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer"),
        _python_dep("flask", True, "the HTTP server"),
        _python_dep("waitress", True, "the production WSGI server"),
        _python_dep("transformers", True, "Hugging Face models"),
        _python_dep("torch", False, "needed to run models locally with --hf-model"),
        _lake_check(),
    ]
    checks += _workspace_checks(config.workspace)
    checks += model_checks(config)
    checks.append(_server_check(url))
    checks.append(sandbox_check(config))
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


def run_doctor(url: str | None, config: Config, out: TextIO | None = None) -> int:
    """Print the checks; 0 when nothing failed (warnings allowed), 1 otherwise."""
    out = out or sys.stdout
    checks = doctor_checks(url, config)
    print(format_table(checks), file=out)
    failed = [c for c in checks if c.status == "fail"]
    print(file=out)
    print(f"{len(failed)} problem(s) found" if failed else "all required checks passed", file=out)
    return 1 if failed else 0
