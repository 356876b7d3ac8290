"""Run checked Lean code with no more rights than it needs.

Lean code is arbitrary code (``#eval``, ``run_cmd``). A sandboxed REPL gets its
own temporary directory as its only writable place, no network, and limits on
processes and file size:

* ``bwrap`` (bubblewrap installed): the whole file system is mounted read-only
  except the worker's directory, with fresh network, PID and IPC namespaces.
* ``rlimit`` (the fallback): a private network namespace where the kernel
  allows one, and rlimits. Writes outside the directory are prevented only by
  file permissions; this is logged at start-up.

In both modes: file size is capped with ``RLIMIT_FSIZE``, core dumps are off,
and the process count is capped per worker with a ``pids`` cgroup where one can
be created (cgroup v1 or v2), else with ``RLIMIT_NPROC``, which the kernel does
not apply to root. A server running as root starts its REPLs as the
unprivileged user ``nobody`` when that user can reach the REPL executable and
its working directory; otherwise the REPL keeps root's user id (still without
capabilities under bwrap) and a warning says why.

Address space is never capped: an ``import Mathlib`` maps far more virtual
memory than it uses, so memory is bounded by RSS recycling in the pool instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from leanstep.repl.process import LaunchSpec

log = logging.getLogger(__name__)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MODES = ("auto", "bwrap", "rlimit", "none")
UNPRIVILEGED_ID = 65534  # nobody / nogroup
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


@dataclass(frozen=True)
class SandboxPolicy:
    mode: str = "auto"
    max_procs: int = 256
    max_file_bytes: int = 512 * 1024 * 1024

    def resolved_mode(self) -> str:
        """The mode that will actually be used on this machine."""
        if self.mode not in MODES:
            raise ValueError(f"unknown sandbox mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode == "auto":
            return "bwrap" if bwrap_usable() else "rlimit"
        if self.mode == "bwrap" and not bwrap_usable():
            raise RuntimeError("--sandbox bwrap asked for, but bubblewrap is not installed or cannot create "
                               "namespaces here (install it: apt-get install bubblewrap)")
        return self.mode


_BWRAP_OK: bool | None = None
_WARNED_ROOT: set[str] = set()


def bwrap_usable() -> bool:
    """True when bwrap exists and can create the namespaces we ask for (checked once)."""
    global _BWRAP_OK
    if _BWRAP_OK is None:
        path = shutil.which("bwrap")
        _BWRAP_OK = False
        if path:
            probe = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--unshare-pid",
                                    "--die-with-parent", "true"], capture_output=True, timeout=10)
            _BWRAP_OK = probe.returncode == 0
    return _BWRAP_OK


def reachable_by_others(path: Path) -> bool:
    """Whether a user with no special rights can traverse to ``path`` and read or run it."""
    path = path.resolve()
    try:
        for parent in path.parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & (stat.S_IROTH | stat.S_IXOTH))
    except OSError:
        return False


def _pids_cgroup_root() -> Path | None:
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            if root.name == "pids" or "pids" in (root / "cgroup.controllers").read_text(errors="ignore").split():
                return root
    return None


class PidsLimit:
    """A per-worker pids cgroup: caps the worker's process count whatever its user id."""

    def __init__(self, name: str, max_procs: int) -> None:
        root = _pids_cgroup_root()
        self.path: Path | None = None
        if root is None:
            return
        path = root / name
        try:
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(max_procs))
            self.path = path
        except OSError as exc:
            log.debug("no pids cgroup for %s: %s", name, exc)
            self.remove_dir(path)

    def join(self) -> None:
        """Called in the child before exec."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))

    def remove(self) -> None:
        if self.path is not None:
            self.remove_dir(self.path)

    @staticmethod
    def remove_dir(path: Path) -> None:
        try:
            path.rmdir()
        except OSError:
            pass


def _drop_root() -> None:
    os.setgroups([])
    os.setgid(UNPRIVILEGED_ID)
    os.setuid(UNPRIVILEGED_ID)


def _make_preexec(policy: SandboxPolicy, pids: PidsLimit, *, private_net: bool, drop_root: bool) -> Callable[[], None]:
    def preexec() -> None:
        pids.join()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_bytes, policy.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_procs, policy.max_procs))
        if private_net:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:  # as root directly, else inside a new user namespace
                libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)
        if drop_root:
            _drop_root()

    return preexec


def _can_drop_root(argv0: str, cwd: Path) -> bool:
    executable = shutil.which(argv0) or argv0
    return reachable_by_others(Path(executable)) and reachable_by_others(cwd)


def sandboxed(argv: Sequence[str], *, workdir: Path, cwd: Path, env: Mapping[str, str] | None,
              policy: SandboxPolicy, mode: str) -> LaunchSpec:
    """Wrap a REPL command line so that it runs under ``policy`` with ``workdir`` as its only writable place."""
    env = dict(os.environ if env is None else env)
    env.update(HOME=str(workdir), TMPDIR=str(workdir))
    if mode == "none":
        return LaunchSpec(tuple(argv), cwd=cwd, env=env)
    drop_root = os.geteuid() == 0 and _can_drop_root(argv[0], cwd)
    if os.geteuid() == 0:
        if drop_root:
            os.chown(workdir, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
        elif argv[0] not in _WARNED_ROOT:
            _WARNED_ROOT.add(argv[0])
            log.warning("REPL %s keeps root's user id: user 'nobody' cannot reach it or %s", argv[0], cwd)
    pids = PidsLimit(f"leanstep-{workdir.name}", policy.max_procs)
    preexec = _make_preexec(policy, pids, private_net=mode == "rlimit", drop_root=drop_root)
    if mode == "rlimit":
        return LaunchSpec(tuple(argv), cwd=cwd, env=env, preexec=preexec, cleanup=pids.remove)
    wrapper = (
        shutil.which("bwrap") or "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        # no fresh tmpfs over /tmp: the toolchain, the workspace or this checkout may live there;
        # /tmp stays read-only like the rest, and TMPDIR points at the worker's own directory
        "--bind", str(workdir), str(workdir),
        "--unshare-net", "--unshare-pid", "--unshare-ipc",
        "--die-with-parent",
        "--chdir", str(cwd),
        "--",
    )
    return LaunchSpec(wrapper + tuple(argv), cwd=cwd, env=env, preexec=preexec, cleanup=pids.remove)


def describe(mode: str) -> str:
    return {
        "bwrap": "bubblewrap: read-only file system except the worker's directory, no network, own PID namespace, "
                 "process and file-size limits",
        "rlimit": "process and file-size limits and a private network namespace where allowed; writes outside the "
                  "worker directory are prevented only by file permissions (install bubblewrap for more)",
        "none": "no isolation: checked code runs with the server's rights",
    }[mode]
