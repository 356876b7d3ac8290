"""``leanstep setup``: build what the server needs in a Lean project.

The REPL binary is built with the project's own toolchain, since a REPL can only
import ``.olean`` files of the Lean version it was built with; where the project
depends on leanstep, the ``LeanTactic`` library is built too. Where Lean is not
installed it says what to install and returns non-zero; it never installs a
toolchain itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from leanstep.workspace import (
    LEANSTEP_ROOT,
    REPL_BINARY_CANDIDATES,
    STANDALONE_REPL_DIR,
    find_lake,
    find_repl_binary,
    has_lakefile,
    is_leanstep_itself,
    read_toolchain,
    workspace_depends_on,
)

REPL_REPO = "https://github.com/leanprover-community/repl"
ELAN_INSTALL = "curl https://elan.lean-lang.org/elan-init.sh -sSf | sh"
SETUP_TIMEOUT_S = 4 * 3600  # a first Mathlib-sized build can take hours; never hang forever


def _toolchain_tag(toolchain: str) -> str | None:
    """``leanprover/lean4:v4.33.0-rc2`` -> ``v4.33.0-rc2`` (the REPL tags its releases so)."""
    match = re.search(r"(v\d+\.\d+\.\d+(?:-rc\d+)?)\s*$", toolchain)
    return match.group(1) if match else None


def _run(cmd: Sequence[str], cwd: Path, out: TextIO) -> int:
    print(f"$ (cd {cwd} && {' '.join(cmd)})", file=out, flush=True)
    try:
        return subprocess.run(list(cmd), cwd=cwd, timeout=SETUP_TIMEOUT_S, check=False).returncode
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
    if not has_lakefile(workspace):
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

    if is_leanstep_itself(workspace):
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
