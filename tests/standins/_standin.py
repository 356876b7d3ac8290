"""What the stand-in executables that play elan-init, elan, lake, lean and leanchecker in the tests share.

Each call is recorded as one JSON line (tool, argv, working directory, LEAN_PATH, pid, user id, and
what the tool observed) in the file ``$LEAN_STANDIN_LOG`` names (a ``LEAN_`` variable, so the sandbox passes
it on), when there is one and it can be written: in a read-only sandbox nothing is recorded. What to
do is read from ``-- standin: <directive>`` comments in the submission, which the stand-in ``lean``
copies into the "olean" it writes, so the other tools read them from the compiled module, as the
real ones read oleans.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

DIRECTIVE = re.compile(r"--\s*standin:\s*(\S+)(?:\s+(\S+))?")
HERE = Path(__file__).resolve().parent
# Where the stand-ins' sources are: an installed copy of this file reads it from the note `install` leaves.
SOURCES = Path((HERE / "_standin_sources").read_text()) if (HERE / "_standin_sources").exists() else HERE


def record(**observed: object) -> None:
    log = os.environ.get("LEAN_STANDIN_LOG")
    if not log:
        return
    entry = {"tool": Path(sys.argv[0]).name, "path": sys.argv[0], "argv": sys.argv[1:], "cwd": os.getcwd(),
             "lean_path": os.environ.get("LEAN_PATH", ""), "pid": os.getpid(), "uid": os.getuid(), **observed}
    try:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def directives(text: str) -> dict[str, str]:
    """``-- standin: NAME [ARG]`` comments: NAME -> ARG ("" without one)."""
    return {m.group(1): m.group(2) or "" for m in DIRECTIVE.finditer(text)}


def find_olean(module: str) -> Path | None:
    """Where ``module``'s olean is on LEAN_PATH, as Lean's ``SearchPath.findWithExt`` looks for it."""
    root = module.split(".", maxsplit=1)[0]
    for entry in filter(None, os.environ.get("LEAN_PATH", "").split(os.pathsep)):
        base = Path(entry)
        if (base / root).is_dir() or (base / f"{root}.olean").exists():
            return base.joinpath(*module.split(".")).with_suffix(".olean")
    return None


def load_module(module: str) -> dict:
    """The compiled module (what the stand-in lean wrote), or exit as a Lean tool does on an uncaught error."""
    path = find_olean(module)
    if path is None or not path.is_file():
        fail(f"uncaught exception: unknown module prefix '{module.split('.', maxsplit=1)[0]}'")
    return json.loads(path.read_text(encoding="utf-8"))


def fail(message: str, status: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(status)


def install(standin: str, target: Path, python: str) -> Path:
    """Copy the stand-in named ``standin`` (and this helper) to ``target``, run by ``python``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _, rest = (SOURCES / standin).read_text().split("\n", 1)
    target.write_text(f"#!{python}\n{rest}")
    target.chmod(0o755)
    if target.parent.resolve() != SOURCES:
        shutil.copy(SOURCES / "_standin.py", target.parent / "_standin.py")
        (target.parent / "_standin_sources").write_text(str(SOURCES))
    return target


def workspace_directives(workspace: Path | None = None) -> dict[str, str]:
    """The ``-- standin:`` directives of the lakefile in ``workspace`` (default: the working directory)."""
    workspace = Path.cwd() if workspace is None else workspace
    lakefile = next((p for p in (workspace / "lakefile.lean", workspace / "lakefile.toml") if p.exists()), None)
    return {} if lakefile is None else directives(lakefile.read_text())


def elan_home() -> Path:
    return Path(os.environ.get("ELAN_HOME") or Path.home() / ".elan")
