"""Set up a Lean workspace for the server: ``leanstep setup`` and ``leanstep serve --setup`` (``make serve``).

Five steps, in order. Each is printed with its progress (the tools' own output
streams through), skipped when already done, and a failure is one line that
says what to do:

1. **elan**, Lean's toolchain manager (it provides ``lake`` and ``lean``).
   When ``lake`` is missing and installing was asked for, elan's official
   installer runs non-interactively (``-y --default-toolchain none``): an
   ``elan-init`` on PATH, else the script at ``--elan-installer``.
2. **the workspace's Lean**, the toolchain its ``lean-toolchain`` names,
   installed by elan (``elan toolchain install``).
3. **the REPL**, built with exactly that Lean (a REPL only imports ``.olean``
   files of the Lean it was built with). In leanstep itself, and in a project
   that requires leanstep with leanstep's Lean version, it is leanstep's pinned
   ``REPL`` dependency (``lake build REPL/repl``). Otherwise it is a checkout of
   the REPL in ``.lake/leanstep-repl`` at the revision made for the workspace's
   Lean release (:mod:`leanstep.repl_releases`), fetched by commit from
   ``--repl-repo``. Then the ``llmstep`` tactic, where the workspace has it
   (``lake build LeanTactic``); the server does not need it, so its failure is a
   note.
4. **Mathlib's compiled files**, ``lake exe cache get``, when the workspace uses Mathlib.
5. **the warm headers** (``--warm-headers``, by default ``import Mathlib`` in a
   Mathlib workspace), each imported once by the built REPL: this proves the REPL
   and the workspace's build agree before the server starts, and leaves the
   ``.olean`` files in the OS cache. Skipped while the REPL binary and the
   workspace's manifest are those of the last successful import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from leanstep.config import Config
from leanstep.repl.launch import SetupError, repl_command, warm_headers
from leanstep.repl.protocol import CommandRequest, ProtocolError, decode_response, encode_request, split_frames
from leanstep.repl_releases import REPL_RELEASES, ReplRelease, find_release, lean_release, supported_range
from leanstep.workspace import (
    DEPENDENCY_REPL_BINARY,
    LEANSTEP_ROOT,
    STANDALONE_REPL_BINARY,
    STANDALONE_REPL_DIR,
    elan_bin,
    find_lake,
    find_repl_binary,
    has_lakefile,
    is_leanstep_itself,
    mathlib_built,
    read_toolchain,
    workspace_depends_on,
    workspace_has_mathlib,
)

ELAN_INSTALL = "curl https://elan.lean-lang.org/elan-init.sh -sSf | sh"
ELAN_INIT_ARGS = ("-y", "--default-toolchain", "none")  # no prompt; the workspace's lean-toolchain picks the Lean
SETUP_TIMEOUT_S = 4 * 3600  # a first Mathlib-sized build can take hours; never hang forever
GIT_TIMEOUT_S = 600
WARM_STAMP = Path(".lake") / "leanstep-warm.json"


class SetupFailed(Exception):
    """A step that cannot finish: ``str(self)`` is one line saying what failed and what to do; ``code`` the exit."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Step:
    """One set-up step: ``done()`` says why it can be skipped (None: it must run); ``run()`` does it and says what
    it did, or raises SetupFailed."""

    title: str
    done: Callable[[], str | None]
    run: Callable[[], str]


def _seconds(start: float) -> str:
    elapsed = time.monotonic() - start
    return f"{elapsed:.1f} s" if elapsed < 120 else f"{elapsed / 60:.1f} min"


def run_steps(steps: Sequence[Step], out: TextIO) -> int:
    """Run the steps in order, printing each; 0, or the failed step's code after its one-line error."""
    for number, step in enumerate(steps, start=1):
        prefix = f"[{number}/{len(steps)}] {step.title}"
        try:
            skipped = step.done()
            if skipped is not None:
                print(f"{prefix}: skipped, {skipped}", file=out, flush=True)
                continue
            print(f"{prefix} ...", file=out, flush=True)
            start = time.monotonic()
            result = step.run()
        except SetupFailed as exc:
            print(f"error: {step.title}: {exc}", file=out, flush=True)
            return exc.code
        print(f"{prefix}: {result} ({_seconds(start)})", file=out, flush=True)
    return 0


def _run(cmd: Sequence[str], cwd: Path, out: TextIO, what: str) -> int:
    """Run a tool with its output streaming to the terminal; its exit status (127: not found, 124: too long)."""
    print(f"$ (cd {cwd} && {' '.join(cmd)})", file=out, flush=True)
    try:
        return subprocess.run(list(cmd), cwd=cwd, timeout=SETUP_TIMEOUT_S, check=False).returncode
    except FileNotFoundError:
        raise SetupFailed(f"{cmd[0]} was not found ({what})", 127) from None
    except subprocess.TimeoutExpired:
        raise SetupFailed(f"`{' '.join(cmd)}` ran longer than {SETUP_TIMEOUT_S} s ({what}); rerun to resume", 124) \
            from None


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise SetupFailed("git is needed to fetch the Lean REPL: install git (e.g. `apt-get install git`) and rerun", 3)
    try:
        return subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise SetupFailed(f"`git {' '.join(args)}` took over {GIT_TIMEOUT_S} s: check the network and rerun", 124) \
            from None


class WorkspaceSetup:
    """The steps for one workspace; ``install_elan`` allows step 1 to install elan when ``lake`` is missing;
    ``releases`` is the table of REPL revisions by Lean release."""

    def __init__(self, config: Config, out: TextIO, *, install_elan: bool,
                 releases: tuple[ReplRelease, ...] = REPL_RELEASES) -> None:
        if config.workspace is None:
            raise ValueError("a workspace is needed")
        self.config = config
        self.workspace = config.workspace.resolve()
        self.out = out
        self.install_elan = install_elan
        self.releases = releases
        self.toolchain = read_toolchain(self.workspace)

    def steps(self) -> list[Step]:
        return [
            Step("elan (Lean's toolchain manager)", self._elan_done, self._install_elan),
            Step(f"Lean {self.toolchain or '(no lean-toolchain: elan default)'}", self._lean_done, self._install_lean),
            Step("Lean REPL", self._repl_done, self._build_repl),
            Step("Mathlib's compiled files", self._mathlib_done, self._fetch_mathlib),
            Step("warm headers", self._warm_done, self._warm),
        ]

    # -- 1. elan ---------------------------------------------------------------

    def _lake(self) -> str:
        lake = find_lake()
        if lake is None:
            raise SetupFailed(f"`lake` (Lean's build tool) is not on PATH or in {elan_bin()}: install elan with "
                              f"`{ELAN_INSTALL}`, open a new shell, and rerun (`make serve` installs it itself)", 3)
        return lake

    def _elan_done(self) -> str | None:
        lake = find_lake()
        return None if lake is None else f"lake is {lake}"

    def _install_elan(self) -> str:
        if not self.install_elan:
            raise SetupFailed(f"`lake` (Lean's build tool) is not on PATH or in {elan_bin()}: install elan with "
                              f"`{ELAN_INSTALL}`, open a new shell, and rerun (or rerun with --install-elan; "
                              "`make serve` installs it itself)", 3)
        with tempfile.TemporaryDirectory(prefix="leanstep-elan-") as tmp:
            installer = shutil.which("elan-init")
            argv = [installer, *ELAN_INIT_ARGS] if installer else ["sh", str(self._download_installer(Path(tmp))),
                                                                   *ELAN_INIT_ARGS]
            rc = _run(argv, self.workspace, self.out, "elan's installer")
        if rc != 0:
            raise SetupFailed(f"elan's installer failed (exit {rc}; its output is above): install elan by hand with "
                              f"`{ELAN_INSTALL}` and rerun", rc)
        lake = find_lake()
        if lake is None:
            raise SetupFailed(f"elan's installer finished but there is no lake in {elan_bin()}: open a new shell "
                              "(or `source ~/.elan/env`) and rerun", 3)
        return f"installed; lake is {lake} (open a new shell to have it on PATH)"

    def _download_installer(self, into: Path) -> Path:
        url = self.config.elan_installer
        script = into / "elan-init.sh"
        print(f"downloading elan's installer from {url}", file=self.out, flush=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                script.write_bytes(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SetupFailed(f"could not download elan's installer from {url} ({reason}): check the network, or "
                              f"install elan by hand with `{ELAN_INSTALL}`, then rerun", 3) from None
        return script

    # -- 2. the workspace's Lean ---------------------------------------------------

    def _elan(self) -> str | None:
        beside = Path(self._lake()).parent / "elan"
        return str(beside) if beside.is_file() else shutil.which("elan")

    def _lean_done(self) -> str | None:
        if self.toolchain is None:
            return "no lean-toolchain file: lake uses elan's default Lean"
        elan = self._elan()
        if elan is None:
            return f"no elan beside {self._lake()}: that lake's Lean is used"
        listed = subprocess.run([elan, "toolchain", "list"], cwd=self.workspace, capture_output=True, text=True,
                                timeout=60, check=False)
        installed = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        return "installed" if self.toolchain in installed else None

    def _install_lean(self) -> str:
        elan = self._elan()
        assert elan is not None and self.toolchain is not None  # _lean_done skips otherwise
        rc = _run([elan, "toolchain", "install", self.toolchain], self.workspace, self.out, "installing Lean")
        if rc != 0:
            raise SetupFailed(f"elan could not install {self.toolchain} (exit {rc}): check the name in "
                              f"{self.workspace / 'lean-toolchain'} and the network, then rerun", rc)
        return "installed"

    # -- 3. the REPL ---------------------------------------------------------------

    def _uses_pinned_repl(self) -> bool:
        """Whether leanstep's own ``REPL`` dependency fits: leanstep itself, or a dependent on leanstep's Lean."""
        if is_leanstep_itself(self.workspace):
            return True
        return workspace_depends_on(self.workspace, "leanstep") and self.toolchain == read_toolchain(LEANSTEP_ROOT)

    def _expected_binary(self) -> Path:
        return self.workspace / (DEPENDENCY_REPL_BINARY if self._uses_pinned_repl() else STANDALONE_REPL_BINARY)

    def _repl_done(self) -> str | None:
        binary = self._expected_binary()
        if find_repl_binary(self.workspace) != binary:
            return None
        if not self._uses_pinned_repl() and self._checked_out(self.workspace / STANDALONE_REPL_DIR) != \
                self._release().commit:
            return None
        return f"built: {binary}"

    @staticmethod
    def _checked_out(target: Path) -> str | None:
        """The commit checked out in the standalone REPL folder, or None."""
        if not (target / ".git").exists():
            return None
        proc = _git(["rev-parse", "HEAD"], target)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _build_repl(self) -> str:
        if not has_lakefile(self.workspace):
            raise SetupFailed(f"{self.workspace} is not a Lake project (no lakefile.lean or lakefile.toml): create "
                              "one with `lake new myproject math` (Mathlib) or `lake new myproject`, and serve that", 2)
        lake = self._lake()
        if self._uses_pinned_repl():
            self._lake_build(lake, ["REPL/repl"], self.workspace)
        else:
            self._build_standalone_repl(lake)
        binary = find_repl_binary(self.workspace)
        if binary != self._expected_binary():
            raise SetupFailed(f"the build finished but left no REPL binary at {self._expected_binary()}: see the "
                              "build output above", 1)
        self._build_tactic(lake)
        return f"built: {binary}"

    def _lake_build(self, lake: str, targets: list[str], cwd: Path) -> None:
        rc = _run([lake, "build", *targets], cwd, self.out, "building")
        if rc != 0:
            raise SetupFailed(f"`lake build {' '.join(targets)}` failed in {cwd} (exit {rc}): the build output above "
                              "says why; fix it and rerun", rc)

    def _build_tactic(self, lake: str) -> None:
        """Build the `llmstep` tactic where the workspace has it; the server does not need it, so a failure is a
        note, not the end of the set-up."""
        if not (is_leanstep_itself(self.workspace) or workspace_depends_on(self.workspace, "leanstep")):
            print("note: this project does not depend on leanstep, so the `llmstep` tactic is not built. To use it, "
                  f'add `require leanstep from "{LEANSTEP_ROOT}"` to lakefile.lean (lakefile.toml: [[require]] '
                  f'name = "leanstep", path = "{LEANSTEP_ROOT}"), run `lake update leanstep`, and rerun.',
                  file=self.out, flush=True)
            return
        rc = _run([lake, "build", "LeanTactic"], self.workspace, self.out, "building the llmstep tactic")
        if rc != 0:
            print(f"note: the llmstep tactic did not build with {self.toolchain} (exit {rc}; the output above says "
                  f"why); it is written for {read_toolchain(LEANSTEP_ROOT)} (docs/lean-versions.md). The server does "
                  "not need it: going on.", file=self.out, flush=True)

    def _release(self) -> ReplRelease:
        """The REPL revision for the workspace's Lean: the table's, else a tag of that name in --repl-repo."""
        if self.toolchain is None:
            raise SetupFailed(f"no lean-toolchain file in {self.workspace}: the REPL must be built for the project's "
                              "Lean, so name it there, e.g. `echo leanprover/lean4:v4.19.0 > lean-toolchain`", 2)
        release = find_release(self.toolchain, self.releases)
        if release is not None:
            return release
        lean = lean_release(self.toolchain)
        if lean is not None:
            listed = _git(["ls-remote", "--tags", self.config.repl_repo, f"refs/tags/{lean}"], self.workspace)
            lines = [line.split() for line in listed.stdout.splitlines() if line.strip()]
            if listed.returncode == 0 and lines:
                return ReplRelease(lean, lines[0][0], lean, "not in the table")
        raise SetupFailed(f"no Lean REPL release for {self.toolchain}: the REPL is made for Lean "
                          f"{supported_range(self.releases)} (python/leanstep/repl_releases.py) and tags newer ones "
                          "by version; put one of those in lean-toolchain, or build a REPL for this Lean yourself and "
                          "serve with --repl 'CMD'", 4)

    def _build_standalone_repl(self, lake: str) -> None:
        release = self._release()
        target = self.workspace / STANDALONE_REPL_DIR
        print(f"REPL for {self.toolchain}: {release.describe()} from {self.config.repl_repo}", file=self.out,
              flush=True)
        if self._checked_out(target) != release.commit:
            self._fetch_commit(target, release)
        # The REPL must be built by exactly the workspace's Lean (for a release commit this is its own file).
        (target / "lean-toolchain").write_text(f"{self.toolchain}\n")
        self._lake_build(lake, [], target)

    def _fetch_commit(self, target: Path, release: ReplRelease) -> None:
        target.mkdir(parents=True, exist_ok=True)
        steps = [["init", "--quiet"], ["fetch", "--quiet", "--depth", "1", self.config.repl_repo, release.commit],
                 ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", "FETCH_HEAD"]]
        for args in steps:
            proc = _git(args, target)
            if proc.returncode != 0:
                detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise SetupFailed(f"could not fetch the REPL ({release.describe()}) from {self.config.repl_repo}: "
                                  f"{detail}; check the network (or --repl-repo) and rerun", 3)

    # -- 4. Mathlib ------------------------------------------------------------------

    def _mathlib_done(self) -> str | None:
        if not workspace_has_mathlib(self.workspace):
            return "the workspace does not use Mathlib"
        built = mathlib_built(self.workspace)
        return None if built is None else f"present ({built.relative_to(self.workspace)})"

    def _fetch_mathlib(self) -> str:
        rc = _run([self._lake(), "exe", "cache", "get"], self.workspace, self.out, "fetching Mathlib's cache")
        if rc != 0:
            raise SetupFailed(f"`lake exe cache get` failed in {self.workspace} (exit {rc}): check the network and "
                              "rerun; without the cache, `lake build` compiles Mathlib locally (hours)", rc)
        if mathlib_built(self.workspace) is None:
            raise SetupFailed("`lake exe cache get` finished but Mathlib's compiled files are not in "
                              f"{self.workspace / '.lake/packages/mathlib'}: run `lake build Mathlib` there", 1)
        return "fetched"

    # -- 5. warm headers ---------------------------------------------------------------

    def _signature(self) -> dict[str, object]:
        """What a successful import depends on: the REPL binary, the toolchain, the resolved dependencies."""
        binary = find_repl_binary(self.workspace)
        manifest = self.workspace / "lake-manifest.json"
        return {"repl": str(binary), "repl_mtime_ns": binary.stat().st_mtime_ns if binary else None,
                "toolchain": self.toolchain,
                "manifest_mtime_ns": manifest.stat().st_mtime_ns if manifest.is_file() else None}

    def _read_stamp(self) -> dict[str, object]:
        try:
            stamp = json.loads((self.workspace / WARM_STAMP).read_text())
        except (OSError, ValueError):
            return {}
        return stamp if isinstance(stamp, dict) else {}

    def _warm_done(self) -> str | None:
        headers = warm_headers(self.config)
        if not headers:
            return "no headers to warm (the workspace does not use Mathlib and --warm-headers is empty)"
        stamp = self._read_stamp()
        signature = self._signature()
        if all(stamp.get(header) == signature for header in headers):
            return "imported before by this REPL build"
        return None

    def _warm(self) -> str:
        try:
            argv, cwd = repl_command(self.config)
        except SetupError as exc:
            raise SetupFailed(str(exc), 2) from None
        stamp = self._read_stamp()
        timings = []
        for header in warm_headers(self.config):
            start = time.monotonic()
            self._import(argv, cwd or self.workspace, header)
            timings.append(f"`{header}` in {_seconds(start)}")
            stamp[header] = self._signature()
        (self.workspace / WARM_STAMP).parent.mkdir(parents=True, exist_ok=True)
        (self.workspace / WARM_STAMP).write_text(json.dumps(stamp, indent=1))
        return "imported " + ", ".join(timings)

    def _import(self, argv: tuple[str, ...], cwd: Path, header: str) -> None:
        print(f"importing `{header}` in a REPL ({' '.join(argv)})", file=self.out, flush=True)
        limit = self.config.import_timeout
        try:
            proc = subprocess.run(list(argv), cwd=cwd, input=encode_request(CommandRequest(header)),
                                  capture_output=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise SetupFailed(f"importing `{header}` took over {limit:g} s (--import-timeout): raise it, or check "
                              f"that `lake build` is complete in {self.workspace}", 124) from None
        except OSError as exc:
            raise SetupFailed(f"the REPL did not start ({exc}): rerun `leanstep setup --workspace {self.workspace}`",
                              1) from None
        frames = split_frames(proc.stdout.decode("utf-8", "replace"))
        try:
            response = decode_response(frames[0]) if frames else None
        except ProtocolError:
            response = None
        errors = [] if response is None else [m.data for m in getattr(response, "messages", ()) if m.is_error]
        if response is None or errors or getattr(response, "env", None) is None:
            stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            why = (errors or stderr or [f"no answer (exit {proc.returncode})"])[0].strip().splitlines()[0]
            raise SetupFailed(f"`{header}` does not import in {self.workspace}: {why}; run `lake build` there "
                              "(`lake exe cache get` first for Mathlib) and rerun", 1)


def run_setup(config: Config, out: TextIO | None = None, *, install_elan: bool = False,
              releases: tuple[ReplRelease, ...] = REPL_RELEASES) -> int:
    """Run every set-up step for ``config.workspace``; 0 when it is ready to serve."""
    out = out or sys.stdout
    workspace = config.workspace
    if workspace is None:
        print("error: no workspace: pass --workspace DIR (a Lake project)", file=out)
        return 2
    if not workspace.is_dir():
        print(f"error: {workspace} is not a directory: pass the folder of a Lake project", file=out)
        return 2
    if not has_lakefile(workspace):
        print(f"error: {workspace.resolve()} is not a Lake project (no lakefile.lean or lakefile.toml): create one "
              "with `lake new myproject math` (Mathlib) or `lake new myproject`, and pass that", file=out)
        return 2
    setup = WorkspaceSetup(config, out, install_elan=install_elan, releases=releases)
    print(f"setting up {setup.workspace} (Lean: {setup.toolchain or 'elan default'})", file=out, flush=True)
    rc = run_steps(setup.steps(), out)
    if rc == 0:
        print(f"ready: leanstep serve --workspace {setup.workspace}", file=out, flush=True)
    return rc
