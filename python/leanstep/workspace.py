"""Finding things in a Lean workspace: ``lake``, the REPL binary, the toolchain, its dependencies.

Read-only discovery that the REPL launcher needs; building (``leanstep setup``)
lives in :mod:`leanstep.lean_setup` and diagnosis (``leanstep doctor``) in
:mod:`leanstep.doctor`, which only the CLI imports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

# Where a REPL binary lands: as the standalone checkout `leanstep setup` makes (first: setup makes one only
# when the workspace's own route does not fit its Lean version, and it counts only while the checkout's
# `lean-toolchain` is the workspace's), as the `REPL` dependency (lake lower-cases nothing, but accept both
# spellings), or as the workspace's own build.
STANDALONE_REPL_DIR = Path(".lake") / "leanstep-repl"
STANDALONE_REPL_BINARY = STANDALONE_REPL_DIR / ".lake/build/bin/repl"
DEPENDENCY_REPL_BINARY = Path(".lake/packages/REPL/.lake/build/bin/repl")
LEANSTEP_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding lakefile.lean and LeanTactic/
REPL_BINARY_CANDIDATES = (
    STANDALONE_REPL_BINARY,
    DEPENDENCY_REPL_BINARY,
    Path(".lake/packages/repl/.lake/build/bin/repl"),
    Path(".lake/build/bin/repl"),
)
# Mathlib's compiled root module: present once `lake exe cache get` (or a build) has run (current and pre-2024
# Lake layouts).
MATHLIB_OLEANS = (
    Path(".lake/packages/mathlib/.lake/build/lib/lean/Mathlib.olean"),
    Path(".lake/packages/mathlib/.lake/build/lib/Mathlib.olean"),
    Path(".lake/packages/mathlib/build/lib/Mathlib.olean"),
)

__all__ = [
    "DEPENDENCY_REPL_BINARY", "LEANSTEP_ROOT", "MATHLIB_OLEANS", "REPL_BINARY_CANDIDATES", "STANDALONE_REPL_BINARY",
    "STANDALONE_REPL_DIR", "elan_bin", "find_lake", "find_repl_binary", "has_lakefile", "is_leanstep_itself",
    "mathlib_built", "read_toolchain", "workspace_depends_on", "workspace_has_mathlib",
]


def elan_bin() -> Path:
    """Where elan installs ``elan``, ``lake`` and ``lean``: ``$ELAN_HOME/bin``, by default ``~/.elan/bin``."""
    return Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan") / "bin"


def find_lake() -> str | None:
    """Path of ``lake``: ``$LEANSTEP_LAKE``, then PATH, then elan's default ``~/.elan/bin/lake``."""
    override = os.environ.get("LEANSTEP_LAKE", "").strip()
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    found = shutil.which("lake")
    if found:
        return found
    elan_lake = elan_bin() / "lake"
    if _is_executable(elan_lake):
        return str(elan_lake)
    return None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_repl_binary(workspace: Path | None) -> Path | None:
    """The REPL executable built for ``workspace``, or None (a standalone one built for another Lean is skipped)."""
    if workspace is None:
        return None
    workspace = Path(workspace)
    for candidate in REPL_BINARY_CANDIDATES:
        path = workspace / candidate
        if candidate == STANDALONE_REPL_BINARY and read_toolchain(workspace / STANDALONE_REPL_DIR) != read_toolchain(
                workspace):
            continue
        if _is_executable(path):
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


_REQUIRES_MATHLIB = re.compile(r'^\s*require\s+[«"]?mathlib\b|^\s*name\s*=\s*"mathlib"', re.MULTILINE | re.IGNORECASE)


def workspace_has_mathlib(workspace: Path) -> bool:
    """Whether the workspace uses Mathlib: ``lake-manifest.json`` lists it, or (before dependencies are fetched)
    the lakefile requires it."""
    if workspace_depends_on(workspace, "mathlib"):
        return True
    lakefiles = [Path(workspace) / name for name in ("lakefile.lean", "lakefile.toml")]
    return any(_REQUIRES_MATHLIB.search(f.read_text(errors="replace")) for f in lakefiles if f.is_file())


def mathlib_built(workspace: Path) -> Path | None:
    """Mathlib's compiled root module in the workspace, or None (fetch it with ``lake exe cache get``)."""
    return next((Path(workspace) / p for p in MATHLIB_OLEANS if (Path(workspace) / p).is_file()), None)


def is_leanstep_itself(workspace: Path) -> bool:
    lakefile = Path(workspace) / "lakefile.lean"
    try:
        text = lakefile.read_text()
    except OSError:
        return False
    is_package = re.search(r"^\s*package\s+leanstep\b", text, re.MULTILINE) is not None
    return is_package and (Path(workspace) / "LeanTactic.lean").is_file()


def has_lakefile(workspace: Path) -> bool:
    return (Path(workspace) / "lakefile.lean").is_file() or (Path(workspace) / "lakefile.toml").is_file()
