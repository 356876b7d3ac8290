"""The ``sealed`` trust level: re-check a submission outside the elaborator that it may have attacked.

At ``strict`` the REPL elaborates a submission and ``#print axioms`` reads its axioms in the same
session, but the elaborator runs the submission's own metaprograms. Here, as in the Lean reference
manual's "Validating Proofs" and leanprover/comparator, the submission is compiled to an ``.olean``,
the kernel replays that module's declarations in a process of its own, and the axioms of each name
are read from the compiled environment by a small Lean program of ours. Every step runs in the
pool's sandbox (compiled code is arbitrary code, like REPL code) with the check's wall-clock limit,
bounded output and a scratch directory that is always removed.

The command lines, and the Lean sources (leanprover/lean4 unless named) they rest on:

* ``lake env``, once, in the workspace: without a command it prints the variables it would run a
  command with, one ``VAR=value`` per line (``protected def env`` in ``src/lake/Lake/CLI/Main.lean``):
  ``LEAN_SYSROOT`` (the toolchain), ``LEAN_PATH`` (every package's library directory, Lake's, then
  the inherited ``LEAN_PATH``) and ``PATH`` (``Workspace.augmentedEnvVars`` in
  ``src/lake/Lake/Config/Workspace.lean``, ``Env.baseVars`` in ``src/lake/Lake/Config/Env.lean``).
  The tools then run directly in that environment rather than as ``lake env TOOL``: Lake spawns the
  command and exits with ``child.wait``, whose status the runtime takes from libuv's exit code and
  drops the terminating signal (``process_exit_callback`` in ``src/runtime/process.cpp``), so a
  re-checker killed by a signal would look like one that accepted.
* ``$LEAN_SYSROOT/bin/lean -R SCRATCH -o SCRATCH/out/M.olean SCRATCH/M.lean`` compiles the module:
  ``-o`` writes the ``.olean`` only when elaboration succeeded, and with ``-o`` the main module
  name is required and computed from the file's path under ``--root``/``-R`` (default: the working
  directory), failing for a file outside it (``lean_main`` in ``src/util/shell.cpp``,
  ``moduleNameOfFileName`` in ``src/Lean/Util/Path.lean``). ``SCRATCH/out`` is appended to
  ``LEAN_PATH``, whose entries are package roots: ``import M`` resolves to ``path/M.olean``
  (``SearchPath.findWithExt`` and ``initSearchPath``, same file). Appended, it cannot shadow a
  workspace module.
* ``$LEAN_SYSROOT/bin/leanchecker M`` (shipped with the toolchain since v4.28) replays the module's
  constants into the environment of its imports with the kernel and fails with status 1 on a problem
  (``main`` and ``checkOlean`` in ``src/LeanChecker.lean``); without it, ``lean4checker M`` built in
  the workspace does the same (``main`` in ``Main.lean`` of leanprover/lean4checker).
* ``$LEAN_SYSROOT/bin/lean --run SCRATCH/LeanstepAudit.lean M NAME...`` runs :data:`AUDIT_PROGRAM`:
  ``--run`` stops option parsing and passes the remaining arguments to ``main`` (``lean_main``). The
  program imports only ``Lean``, so the submission cannot affect how it parses; it loads the module
  at run time with ``importModules (imports : Array Import) (opts : Options) ... (loadExts := false)``
  and calls ``collectAxioms [Monad m] [MonadEnv m] (constName : Name) : m (Array Name)``
  (``[MonadError m]`` too in recent versions; ``src/Lean/Util/CollectAxioms.lean``) in ``CoreM``
  through ``CoreM.toIO`` (``src/Lean/CoreM.lean``); a private declaration is found under
  ``mkPrivateName`` (``src/Lean/Modifiers.lean``). Without ``loadExts`` (the default) every
  environment extension keeps its initial state and the interpreter is not used
  (``src/Lean/Environment.lean``), so in recent versions ``collectAxioms`` cannot read the axioms
  the module recorded for itself when it was compiled and walks the constants the kernel re-checked.
  Toolchains older than ``loadExts`` may run the module's initializers while importing it, so the
  program reads a fresh nonce from stdin before the import and its answer counts only with it.

leanprover/comparator is not used as a re-checker: it compares a solution module against a trusted
challenge module and builds both inside the project, and a submission here has no challenge.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from leanstep.repl.pool import WORKDIR_PREFIX
from leanstep.repl.process import LaunchSpec
from leanstep.repl.sandbox import SandboxError, SandboxPlan, plan_sandbox
from leanstep.workspace import find_lake, has_lakefile, read_toolchain

MODULE_PREFIX = "LeanstepSealed_"  # + a hash of the module's text, which therefore cannot name its own module
AUDIT_FILE = "LeanstepAudit.lean"
OUT_DIR = "out"  # under the scratch directory: the only place the tools may write
OUTPUT_LIMIT = 1 << 20  # bytes kept of each output stream of a tool; the rest is read and dropped
PROBE_TIMEOUT = 120.0  # seconds `lake env` may take (it may elaborate the lakefile)
LINE_LIMIT = 500  # characters of a tool's line quoted in a report
LEAN4CHECKER_CANDIDATES = (
    Path(".lake/packages/lean4checker/.lake/build/bin/lean4checker"),
    Path(".lake/build/bin/lean4checker"),
)
_ERRORISH = re.compile(r"error|exception", re.IGNORECASE)

AUDIT_PROGRAM = """\
import Lean
open Lean

/-- The constant `n` stands for in `env`: itself, or the private name it has in module `modName`. -/
def resolve (env : Environment) (modName n : Name) : Option Name :=
  [n, mkPrivateName (env.setMainModule modName) n].find? (fun c => env.contains c)

def axiomsOf (env : Environment) (c : Name) : IO (Array Name) := do
  let ctx : Core.Context := { fileName := "<leanstep-audit>", fileMap := default }
  let (axioms, _) ← (collectAxioms c : CoreM (Array Name)).toIO ctx { env }
  return axioms

/-- `lean --run LeanstepAudit.lean MODULE NAME...`: one JSON line with the axioms of each NAME. -/
def main (args : List String) : IO UInt32 := do
  -- read before the import: only an answer carrying this nonce is ours
  let nonce ← (← IO.getStdin).getLine
  let modArg :: names := args | throw <| IO.userError "usage: lean --run LeanstepAudit.lean MODULE NAME..."
  let modName := modArg.toName
  let env ← importModules #[{ module := modName }] {}
  let mut found : List (String × Json) := []
  let mut missing : Array Json := #[]
  for name in names do
    match resolve env modName name.toName with
    | some c => found := (name, toJson ((← axiomsOf env c).map toString)) :: found
    | none => missing := missing.push (toJson name)
  let answer := Json.mkObj [("nonce", toJson nonce), ("axioms", Json.mkObj found), ("missing", Json.arr missing)]
  IO.println answer.compress
  return 0
"""


@dataclass(frozen=True)
class SealedReport:
    """What a sealed check found; the verifier turns it into a verdict.

    ``rejected``: the compiler or the kernel re-check refused the module (the line that says why).
    ``error``: no answer could be reached (a tool crashed, timed out or answered nonsense), with the
    tool and the limit. Neither set: ``axioms`` holds the axioms of every name asked about.
    """

    axioms: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    rejected: str | None = None
    time: float = 0.0  # wall seconds of the whole check


@dataclass(frozen=True)
class _Toolchain:
    """The workspace's ``lean`` and kernel re-checker, and the environment ``lake env`` runs tools in."""

    lean: str
    checker: str  # leanchecker of the toolchain, or lean4checker built in the workspace
    env: Mapping[str, str]

    @property
    def checker_name(self) -> str:
        return Path(self.checker).name


class _StepFailed(Exception):
    """A step ended the check: ``rejected`` when the submission is to blame, else an infrastructure error."""

    def __init__(self, message: str, *, rejected: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.rejected = rejected


@dataclass(frozen=True)
class _Step:
    tool: str
    doing: str  # for messages: "compiling the module"


@dataclass(frozen=True)
class _Limit:
    """A wall-clock limit: as stated (for messages) and when it runs out."""

    seconds: float
    deadline: float

    @classmethod
    def from_now(cls, seconds: float, start: float | None = None) -> _Limit:
        return cls(seconds, (time.monotonic() if start is None else start) + seconds)


@dataclass(frozen=True)
class _Finished:
    returncode: int | None  # None: still running at the limit (then killed)
    stdout: str
    stderr: str


class SealedChecker:
    """Runs sealed checks for one Lean workspace, every tool under the pool's sandbox.

    The toolchain is probed once (``lake env`` in the workspace) and kept for the checker's life:
    a server picks up a new toolchain or a newly built re-checker when it restarts.
    """

    def __init__(self, workspace: Path | None, sandbox: SandboxPlan, *, scratch_parent: Path | None = None,
                 probe_timeout: float = PROBE_TIMEOUT) -> None:
        self.workspace = None if workspace is None else Path(workspace).resolve()
        self.sandbox = sandbox
        self.scratch_parent = Path(scratch_parent or tempfile.gettempdir())
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._probed: _Toolchain | str | None = None

    def unavailable(self) -> str | None:
        """Why sealed checks cannot run here, in one line saying what to install or run; None when they can."""
        found = self._toolchain()
        return found if isinstance(found, str) else None

    def check(self, header: str, body: str, names: Sequence[str], timeout: float) -> SealedReport:
        """Compile ``header`` + ``body`` as a module, re-check it with the kernel, and read each name's axioms.

        ``timeout`` is the wall-clock limit of the whole check, every tool included.
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        bad = [n for n in names if not n or "\0" in n]
        if bad:
            raise ValueError(f"declaration names must be non-empty and free of NUL, got {bad!r}")
        started = time.monotonic()
        found = self._toolchain()
        if isinstance(found, str):
            return SealedReport(error=f"sealed checking unavailable: {found}", time=time.monotonic() - started)
        try:
            axioms = self._check(found, _module_text(header, body), list(names), _Limit.from_now(timeout, started))
        except _StepFailed as failed:
            elapsed = time.monotonic() - started
            if failed.rejected:
                return SealedReport(rejected=failed.message, time=elapsed)
            return SealedReport(error=failed.message, time=elapsed)
        except OSError as exc:
            return SealedReport(error=f"cannot use a scratch directory in {self.scratch_parent}: {exc}",
                                time=time.monotonic() - started)
        return SealedReport(axioms, time=time.monotonic() - started)

    # -- the steps -----------------------------------------------------------

    def _check(self, tools: _Toolchain, text: str, names: list[str], limit: _Limit) -> dict[str, list[str]]:
        module = MODULE_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        with _scratch(self.scratch_parent) as scratch:
            source, out = scratch / f"{module}.lean", scratch / OUT_DIR
            _write_readonly(source, text)
            _write_readonly(scratch / AUDIT_FILE, AUDIT_PROGRAM)
            env = {**tools.env, "LEAN_PATH": os.pathsep.join(filter(None, [tools.env.get("LEAN_PATH"), str(out)]))}

            compiling = _Step("lean", "compiling the module")
            olean = out / f"{module}.olean"
            done = self._run(compiling, (tools.lean, "-R", str(scratch), "-o", str(olean), str(source)), scratch,
                             env, limit)
            refusal = _refusal(compiling, done, limit)
            if refusal is not None:
                raise _StepFailed(f"lean rejected the module: {refusal.replace(str(source), 'submission')}",
                                  rejected=True)
            _seal(out, module)

            rechecking = _Step(tools.checker_name, "re-checking the module with the kernel")
            done = self._run(rechecking, (tools.checker, module), scratch, env, limit)
            refusal = _refusal(rechecking, done, limit)
            if refusal is not None:
                raise _StepFailed(f"{tools.checker_name} rejected the module: {refusal}", rejected=True)
            if not names:
                return {}

            auditing = _Step("lean", "reading the axioms of the compiled module")
            nonce = secrets.token_hex(16)
            done = self._run(auditing, (tools.lean, "--run", str(scratch / AUDIT_FILE), module, *names), scratch,
                             env, limit, stdin=(nonce + "\n").encode())
            refusal = _refusal(auditing, done, limit)
            if refusal is not None:
                raise _StepFailed(f"the axiom audit failed: {refusal}")
            return _read_audit(done, nonce, names)

    def _run(self, step: _Step, argv: Sequence[str], scratch: Path, env: Mapping[str, str], limit: _Limit, *,
             stdin: bytes = b"") -> _Finished:
        """Run one tool in the sandbox, ``scratch/out`` its only writable place, until ``limit`` runs out."""
        if limit.deadline <= time.monotonic():
            raise _StepFailed(f"{step.tool} could not start within the {limit.seconds:g} s limit ({step.doing})")
        try:
            plan = plan_sandbox(argv, cwd=self.workspace, env={**self.sandbox.env, **env},
                                policy=self.sandbox.policy, workdir_parent=scratch)
            spec = plan.launch(scratch / OUT_DIR)
        except SandboxError as exc:
            raise _StepFailed(f"sandbox ({step.doing}): {exc}") from None
        except OSError as exc:
            raise _StepFailed(f"cannot prepare the sandbox for {step.tool} ({step.doing}): {exc}") from None
        try:
            return _run_bounded(spec, stdin, limit.deadline)
        except (OSError, subprocess.SubprocessError) as exc:  # a failing pre-exec hook is a SubprocessError
            raise _StepFailed(f"cannot start {step.tool} ({step.doing}): {exc}") from None

    # -- the toolchain -------------------------------------------------------

    def _toolchain(self) -> _Toolchain | str:
        with self._lock:
            if self._probed is None:
                self._probed = self._probe()
            return self._probed

    def _probe(self) -> _Toolchain | str:
        workspace = self.workspace
        if workspace is None:
            return "no Lean workspace: pass --workspace DIR (a Lake project) to check at the sealed level"
        if not has_lakefile(workspace):
            return f"{workspace} is not a Lake project (no lakefile.lean or lakefile.toml)"
        lake = find_lake()
        if lake is None:
            return "`lake` is not on PATH: install elan (https://github.com/leanprover/elan), which provides lake"
        step = _Step("lake", "reading the workspace's environment with `lake env`")
        try:
            with _scratch(self.scratch_parent) as scratch:
                limit = _Limit.from_now(self.probe_timeout)
                done = self._run(step, (lake, "env"), scratch, {}, limit)
                refusal = _refusal(step, done, limit)
        except _StepFailed as failed:
            return failed.message
        except OSError as exc:
            return f"cannot make a scratch directory in {self.scratch_parent}: {exc}"
        if refusal is not None:
            return f"`lake env` failed in {workspace}: {refusal} (run `lake build` there)"
        env = _parse_env(done.stdout)
        sysroot = Path(env.get("LEAN_SYSROOT", ""))
        lean = sysroot / "bin" / "lean"
        if not sysroot.is_absolute() or not _executable(lean):
            return (f"`lake env` in {workspace} names no Lean toolchain with a `lean` (LEAN_SYSROOT="
                    f"{env.get('LEAN_SYSROOT', '')!r}): install the workspace's toolchain with elan")
        candidates = [sysroot / "bin" / "leanchecker"] + [workspace / c for c in LEAN4CHECKER_CANDIDATES]
        checker = next((c for c in candidates if _executable(c)), None)
        if checker is None:
            toolchain = read_toolchain(workspace) or env.get("ELAN_TOOLCHAIN") or str(sysroot)
            return (f"no kernel re-checker for {toolchain}: use a Lean toolchain of v4.28 or later (it ships "
                    f"`leanchecker`), or require leanprover/lean4checker in {workspace} and run "
                    "`lake build lean4checker` there")
        return _Toolchain(str(lean), str(checker), env)


# --------------------------------------------------------------------------- #
# Helpers


def _module_text(header: str, body: str) -> str:
    return header + ("\n" if header and not header.endswith("\n") else "") + body


def _parse_env(printed: str) -> dict[str, str]:
    """``lake env``'s ``VAR=value`` lines; an empty value is a variable lake unsets, so it is left out."""
    pairs = (line.partition("=") for line in printed.splitlines())
    return {name: value for name, sep, value in pairs if sep and name and value}


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A fresh directory for one check, removed however the check ends.

    The inputs lie in it, readable by the tools (which may run under other user ids) but not theirs to
    change; ``out/`` inside is their workdir. It is named like the pool's worker directories, so a
    later server removes it if this one is killed (``sweep_stale_workdirs``).
    """
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-sealed-", dir=parent))
    try:
        path.chmod(0o755)
        (path / OUT_DIR).mkdir()
        yield path
    finally:
        _remove_tree(path)


def _remove_tree(path: Path) -> None:
    """Remove ``path`` even where a tool took away the rights to its directories.

    Root needs no rights back. Otherwise every tool ran under the server's own id, so a link a tool
    planted in place of a directory leads this nowhere the tool could not have changed itself.
    """
    def reopen(directory: str) -> None:
        with suppress(OSError):
            os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        reopen(entry.path)

    if os.geteuid() != 0:
        reopen(str(path))
    shutil.rmtree(path, ignore_errors=True)


def _write_readonly(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as handle:
        handle.write(text)


def _seal(out: Path, module: str) -> None:
    """Make the compiled module read-only (and, as root, the server's) before anything reads it.

    The next step may run under another worker id, and nothing the compile step left behind may change
    what the kernel checks. The ``.olean`` parts must be regular files; links are refused, not followed.
    """
    parts = sorted(out.glob(f"{module}.olean*"))
    if out / f"{module}.olean" not in parts:
        raise _StepFailed("lean exited 0 but wrote no .olean (compiling the module)")
    for part in parts:
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise _StepFailed(f"the compiled module's {part.name} is not a regular file: {exc}",
                              rejected=True) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _StepFailed(f"the compiled module's {part.name} is not a regular file", rejected=True)
            if os.geteuid() == 0:
                os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o444)
        finally:
            os.close(fd)


def _refusal(step: _Step, done: _Finished, limit: _Limit) -> str | None:
    """None when the tool succeeded, else the line that says why it refused; raises for a timeout or a signal."""
    if done.returncode is None:
        raise _StepFailed(f"{step.tool} did not finish within the {limit.seconds:g} s limit ({step.doing}; "
                          "it was killed)")
    code = done.returncode
    # a signal is a negative status here, and 128 + its number through bubblewrap (like a shell)
    signum = -code if code < 0 else code - 128 if code > 128 else None
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        raise _StepFailed(f"{step.tool} was killed by {name} ({step.doing})")
    if code == 0:
        return None
    return _first_line(done.stdout, done.stderr)


def _first_line(*outputs: str) -> str:
    """The first line that mentions an error or exception, else the first line, of ``outputs`` in order."""
    lines = [line.strip() for output in outputs for line in output.splitlines() if line.strip()]
    line = next((x for x in lines if _ERRORISH.search(x)), lines[0] if lines else "(no output)")
    return line if len(line) <= LINE_LIMIT else line[:LINE_LIMIT] + "…"


def _read_audit(done: _Finished, nonce: str, names: Sequence[str]) -> dict[str, list[str]]:
    """The axioms of each name from the audit program's last line, which must carry this run's nonce."""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("nonce"), str) \
            or answer["nonce"].strip() != nonce:
        raise _StepFailed("the axiom audit's last line is not its answer for this run (no JSON with this run's "
                          f"nonce): {_first_line(done.stdout, done.stderr)}")
    axioms, missing = answer.get("axioms"), answer.get("missing")
    if not isinstance(axioms, dict) or not isinstance(missing, list) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in axioms.values()):
        raise _StepFailed("the axiom audit's answer is malformed")
    absent = [str(n) for n in missing] + [n for n in names if n not in axioms and n not in missing]
    if absent:
        raise _StepFailed(f"axiom audit incomplete: {', '.join(absent)} not found in the compiled module")
    return {name: list(axioms[name]) for name in names}


def _run_bounded(spec: LaunchSpec, stdin: bytes, deadline: float) -> _Finished:
    """Run ``spec`` until it exits or ``deadline``, keeping at most ``OUTPUT_LIMIT`` bytes of each stream.

    Its process group is killed when it ends either way (nothing it started outlives it there), and
    the spec's cleanup always runs.
    """
    try:
        proc = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=None if spec.env is None else dict(spec.env),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=spec.preexec, close_fds=True,  # noqa: PLW1509 - the sandbox's hook
        )
    except BaseException:
        if spec.cleanup is not None:
            spec.cleanup()
        raise
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    try:
        if stdin and proc.stdin is not None:
            try:
                proc.stdin.write(stdin)  # a few bytes: never more than the pipe holds
                proc.stdin.close()
            except BrokenPipeError:
                pass
        with selectors.DefaultSelector() as selector:
            for fd in kept:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                if proc.poll() is not None:
                    _kill_group(proc.pid)  # what it left running would keep the pipes open
                for key, _ in selector.select(min(0.25, max(0.0, deadline - time.monotonic()))):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    buffer = kept[key.fd]
                    buffer += chunk[: max(0, OUTPUT_LIMIT - len(buffer))]
        if proc.poll() is None:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        returncode = proc.poll()
    finally:
        _kill_group(proc.pid)
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if spec.cleanup is not None:
            spec.cleanup()
    return _Finished(returncode, kept[out_fd].decode("utf-8", "replace"), kept[err_fd].decode("utf-8", "replace"))


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


__all__ = ["SealedChecker", "SealedReport"]
