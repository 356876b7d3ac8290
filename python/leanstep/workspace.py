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

__all__ = [
    "LEANSTEP_ROOT", "REPL_BINARY_CANDIDATES", "STANDALONE_REPL_DIR", "find_lake", "find_repl_binary",
    "has_lakefile", "is_leanstep_itself", "read_toolchain", "workspace_depends_on", "workspace_has_mathlib",
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
