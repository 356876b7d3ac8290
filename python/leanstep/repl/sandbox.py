"""Run checked Lean code with no more rights than it needs.

Lean code is arbitrary code (``#eval``, ``run_cmd``, ``IO.Process.run``). A
sandboxed REPL never runs as root and never holds a capability:

* A server running as root gives every REPL an unprivileged user id of its own
  (``UID_BASE`` + a per-worker number, group the same, no supplementary groups),
  so one REPL cannot read another's directory or signal it; the worker directory
  is owned by that id, its only writable place. A server not running as root
  runs its REPLs under its own id, without capabilities.
* The capability bounding set and ambient set are cleared, ``no_new_privs`` is
  set (no setuid binary gives rights back), and the REPL is killed when the
  server dies (``PR_SET_PDEATHSIG``; bwrap's ``--die-with-parent``).
* File size is capped with ``RLIMIT_FSIZE``, core dumps are off, the process
  count is capped with a per-worker ``pids`` cgroup where one can be made and
  with ``RLIMIT_NPROC`` (per user id, so per worker).

Modes:

* ``bwrap`` (bubblewrap installed): the whole file system is mounted read-only
  except the worker's directory, with fresh network, PID, IPC and UTS
  namespaces. Directories the unprivileged id cannot traverse on the way to the
  REPL (a toolchain in root's home, say) are hidden behind an empty tmpfs and
  only what the REPL needs is bound back, read-only. As root, bwrap sets up the
  mounts and ``setpriv`` drops to the worker's id before the REPL starts.
* ``rlimit`` (no bubblewrap): the same identity, capability and limit rules and
  a private network namespace; writes are stopped by file permissions only, so
  world-writable places such as ``/tmp`` stay writable, and other processes'
  command lines stay visible.
* ``none``: no isolation at all; checked code has the server's rights.

Where no unprivileged REPL is possible (the executable or workspace cannot be
read by an unprivileged user even after masking), :func:`plan_sandbox` refuses
with what to change, unless the operator accepted the risk
(``allow_root_repl``): then the REPL keeps root's id, still without
capabilities.

The REPL's environment is an allowlist (``PATH``, locale, ``LEAN_*``, ``ELAN_*``,
``LAKE_*``, ``PYTHONPATH``, ``LEANSTEP_SIM_*``): API keys and other secrets in
the server's environment never reach checked code.

Address space is never capped: an ``import Mathlib`` maps far more virtual
memory than it uses, so memory is bounded by RSS recycling in the pool instead.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from leanstep.repl.pool import WORKDIR_PREFIX
from leanstep.repl.process import LaunchSpec

log = logging.getLogger(__name__)

MODES = ("auto", "bwrap", "rlimit", "none")
UID_BASE = 2_000_000_000  # far above any real user's or subuid range's id
UID_SPAN = 1_000_000
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
CGROUP_PREFIX = "leanstep-"
CGROUP_REMOVE_SECONDS = 5.0
ENV_ALLOWED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH"})
ENV_ALLOWED_PREFIXES = ("LC_", "LEAN_", "ELAN_", "LAKE_", "LEANSTEP_SIM_")

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


class SandboxError(RuntimeError):
    """The sandbox that was asked for cannot be set up; the message says what to change."""


@dataclass(frozen=True)
class SandboxPolicy:
    mode: str = "auto"
    max_procs: int = 256
    max_file_bytes: int = 512 * 1024 * 1024
    allow_root_repl: bool = False  # the operator accepts REPLs with root's id (still without capabilities)

    def resolved_mode(self) -> str:
        """The mode that will actually be used on this machine."""
        if self.mode not in MODES:
            raise SandboxError(f"unknown sandbox mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode == "auto":
            return "bwrap" if bwrap_usable() else "rlimit"
        if self.mode == "bwrap" and not bwrap_usable():
            raise SandboxError("--sandbox bwrap asked for, but " + _bwrap_problem())
        return self.mode


# --------------------------------------------------------------------------- #
# What the machine offers


_BWRAP_OK: bool | None = None


def _bwrap_problem() -> str:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is needed to drop root inside bubblewrap (apt-get install util-linux)"
    return "bubblewrap cannot create namespaces here (check that user namespaces are enabled)"


def bwrap_usable() -> bool:
    """True when bwrap exists, can create the namespaces we ask for, and (as root) setpriv exists (checked once)."""
    global _BWRAP_OK
    if _BWRAP_OK is None:
        path = shutil.which("bwrap")
        _BWRAP_OK = False
        if path and (os.geteuid() != 0 or shutil.which("setpriv")):
            probe = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--unshare-pid",
                                    "--die-with-parent", "true"], capture_output=True, timeout=10, check=False)
            _BWRAP_OK = probe.returncode == 0
    return _BWRAP_OK


def _cap_last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


# --------------------------------------------------------------------------- #
# Who may reach what


def _traversable(path: Path, synthetic: frozenset[Path]) -> bool:
    """Whether a user with no special rights (not owner, no group) can pass through directory ``path``."""
    if path in synthetic:
        return True
    try:
        return bool(os.stat(path).st_mode & stat.S_IXOTH)
    except OSError:
        return False


def reachable_by_others(path: Path, synthetic: frozenset[Path] = frozenset()) -> bool:
    """Whether an unprivileged user can traverse to ``path`` and read or run it.

    ``synthetic`` holds directories that the sandbox itself creates (mode 0755) on
    the way to a bound path, so their host permissions do not count.
    """
    path = Path(os.path.abspath(path))
    if not all(_traversable(parent, synthetic) for parent in path.parents):
        return False
    if path in synthetic:
        return True
    try:
        return bool(os.stat(path).st_mode & (stat.S_IROTH | stat.S_IXOTH))
    except OSError:
        return False


def _install_root(path: Path) -> Path:
    """The tree an executable needs: ``PREFIX`` for ``PREFIX/bin/x``, else its directory."""
    return path.parent.parent if path.parent.name == "bin" else path.parent


def _symlink_chain(path: str) -> list[Path]:
    """``path`` and every link it goes through to the file it names (a virtualenv's ``python`` is a link to a
    link to the interpreter): each must be reachable inside the sandbox, not only the first and the last."""
    chain = [Path(os.path.abspath(path))]
    while chain[-1].is_symlink() and len(chain) < 40:
        chain.append(Path(os.path.abspath(chain[-1].parent / os.readlink(chain[-1]))))
    return [*chain, Path(os.path.realpath(path))]


def _needed_paths(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> list[Path]:
    """What the REPL must read: its executable (as named, each link on the way, resolved), path arguments, cwd,
    search paths."""
    executable = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
    needed = [*_symlink_chain(executable), cwd]
    needed += [Path(arg) for arg in argv[1:] if os.path.isabs(arg) and os.path.exists(arg)]
    needed += [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(p) and os.path.exists(p)]
    if env.get("ELAN_HOME") and os.path.isdir(env["ELAN_HOME"]):
        needed.append(Path(env["ELAN_HOME"]))
    return needed


def _exposed_roots(needed: Iterable[Path]) -> list[Path]:
    roots: list[Path] = []
    for path in needed:
        root = path if path.is_dir() else _install_root(path)
        if root not in roots:
            roots.append(root)
    return roots


def _masks(roots: Iterable[Path]) -> list[Path]:
    """For each root, its topmost ancestor that others cannot traverse (hidden behind a tmpfs)."""
    masks: list[Path] = []
    for root in roots:
        for ancestor in reversed(root.parents):  # from / downwards
            if not _traversable(ancestor, frozenset()):
                if ancestor not in masks:
                    masks.append(ancestor)
                break
    return masks


def _synthetic_dirs(masks: Sequence[Path], binds: Sequence[Path]) -> frozenset[Path]:
    """The mask tmpfs roots and the directories bwrap creates inside them on the way to each bind."""
    made: set[Path] = set(masks)
    for bind in binds:
        for mask in masks:
            if mask in bind.parents:
                made.update(p for p in bind.parents if mask in p.parents or p == mask)
    return frozenset(made)


# --------------------------------------------------------------------------- #
# Per-worker identity and cgroup


_uid_numbers = itertools.count(random.randrange(UID_SPAN))


def _next_worker_id() -> int:
    return UID_BASE + next(_uid_numbers) % UID_SPAN


def _pids_cgroup_root() -> Path | None:
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK) and (
                root.name == "pids" or "pids" in (root / "cgroup.controllers").read_text(errors="ignore").split()):
            return root
    return None


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _empty_and_remove(path: Path, deadline: float) -> bool:
    """Kill whatever still runs in a cgroup, then remove it; True once it is gone."""
    while True:
        pids = _cgroup_pids(path)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not pids:
            try:
                path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                pass  # dying tasks still hold it
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class PidsLimit:
    """A per-worker pids cgroup: caps the worker's process count whatever its user id.

    Its name carries the server's pid so that a later server can remove the
    cgroups of one that was killed (:func:`sweep_stale_cgroups`).
    """

    def __init__(self, name: str, max_procs: int) -> None:
        root = _pids_cgroup_root()
        self.path: Path | None = None
        if root is None:
            return
        path = root / f"{CGROUP_PREFIX}{os.getpid()}-{name}"
        try:
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(max_procs))
            self.path = path
        except OSError as exc:
            log.debug("no pids cgroup for %s: %s", name, exc)
            _empty_and_remove(path, time.monotonic())

    def join(self) -> None:
        """Called in the child before exec."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))

    def remove(self) -> None:
        """Kill anything left in the cgroup (children the REPL forked) and remove it."""
        if self.path is not None and not _empty_and_remove(self.path, time.monotonic() + CGROUP_REMOVE_SECONDS):
            log.warning("pids cgroup %s could not be removed within %g s", self.path, CGROUP_REMOVE_SECONDS)


_STALE_CGROUP = re.compile(re.escape(CGROUP_PREFIX) + r"(\d+)-")


def sweep_stale_cgroups() -> int:
    """Remove the pids cgroups of servers that are gone (killed before they could clean up); returns how many."""
    root = _pids_cgroup_root()
    if root is None:
        return 0
    removed = 0
    for path in root.glob(CGROUP_PREFIX + "*"):
        match = _STALE_CGROUP.match(path.name)
        if not path.is_dir() or match is None:
            continue
        owner = int(match.group(1))
        if owner == os.getpid() or _alive(owner):
            continue
        removed += _empty_and_remove(path, time.monotonic() + CGROUP_REMOVE_SECONDS)
    return removed


_STALE_WORKDIR = re.compile(re.escape(WORKDIR_PREFIX) + r"(\d+)-")


def sweep_stale_workdirs(parent: Path) -> int:
    """Remove the worker directories of servers that are gone; returns how many."""
    removed = 0
    for path in parent.glob(WORKDIR_PREFIX + "*"):
        match = _STALE_WORKDIR.match(path.name)
        if match is None or not path.is_dir() or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += not path.exists()
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- #
# In the child, before exec


class _Libc:
    """libc entry points resolved in the parent, so the forked child only calls them."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.last_cap = _cap_last_cap()
        self.capset_nr = SYS_CAPSET.get(os.uname().machine)

    def prctl(self, option: int, arg: int = 0) -> int:
        return self.libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))

    def clear_capabilities(self) -> None:
        """Empty the effective, permitted and inheritable sets (what a user namespace grants)."""
        if self.capset_nr is None:
            raise OSError("capset: unknown system call number on this architecture")
        header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()
        if self.libc.syscall(self.capset_nr, header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")


def _child_setup(policy: SandboxPolicy, pids: PidsLimit, libc: _Libc, *, server_pid: int, worker_id: int | None,
                 isolate: bool) -> Callable[[], None]:
    """The pre-exec hook: cgroup, limits, then (``isolate``: rlimit mode) a private network, the identity
    and no capabilities; last the death signal, since an identity change clears it."""

    def setup() -> None:
        pids.join()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (policy.max_file_bytes, policy.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (policy.max_procs, policy.max_procs))
        if isolate:
            privileged = os.geteuid() == 0
            if libc.libc.unshare(CLONE_NEWNET) != 0:  # as root directly, else inside a new user namespace
                privileged = libc.libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
            if privileged:  # root, or all capabilities inside the new user namespace: give them all up
                for cap in range(libc.last_cap + 1):
                    libc.prctl(PR_CAPBSET_DROP, cap)
                libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
                if worker_id is not None:
                    os.setgroups([])
                    os.setresgid(worker_id, worker_id, worker_id)
                    os.setresuid(worker_id, worker_id, worker_id)  # leaving uid 0 empties the capability sets
                else:
                    libc.clear_capabilities()
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
                raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:  # the server died before the death signal was armed
            os._exit(1)

    return setup


# --------------------------------------------------------------------------- #
# The plan


def repl_environment(env: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The allowlisted part of ``env``, with HOME and TMPDIR pointing at the worker's directory."""
    kept = {k: v for k, v in env.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}
    kept.update(HOME=str(workdir), TMPDIR=str(workdir))
    return kept


@dataclass(frozen=True)
class SandboxPlan:
    """How every REPL of one pool is started; made once, checked before the first REPL runs."""

    mode: str
    argv: tuple[str, ...]
    cwd: Path | None  # None: the worker's own directory
    env: Mapping[str, str]
    policy: SandboxPolicy
    unprivileged: bool  # REPLs run under an unprivileged id (their own, when the server is root)
    per_worker_ids: bool
    masked: tuple[Path, ...] = ()
    exposed: tuple[Path, ...] = ()

    def describe(self) -> str:
        who = ("each REPL under an unprivileged user id of its own" if self.per_worker_ids
               else "REPLs under the server's own (non-root) user id" if self.unprivileged
               else "REPLs with ROOT's user id (capabilities dropped)")
        if self.mode == "none":
            return describe("none")
        return f"{describe(self.mode)}; {who}, no capabilities, no_new_privs"

    def launch(self, workdir: Path) -> LaunchSpec:
        """The launch spec of one REPL whose only writable place is ``workdir``."""
        cwd = self.cwd or workdir
        env = repl_environment(self.env, workdir)
        server_pid = os.getpid()
        if self.mode == "none":
            libc = _Libc()

            def die_with_server() -> None:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != server_pid:
                    os._exit(1)

            return LaunchSpec(self.argv, cwd=cwd, env=env, preexec=die_with_server)
        worker_id = _next_worker_id() if self.per_worker_ids else None
        if worker_id is not None:
            os.chown(workdir, worker_id, worker_id)
            os.chmod(workdir, 0o700)
        pids = PidsLimit(workdir.name, self.policy.max_procs)
        libc = _Libc()
        if self.mode == "rlimit":
            setup = _child_setup(self.policy, pids, libc, server_pid=server_pid, worker_id=worker_id, isolate=True)
            return LaunchSpec(self.argv, cwd=cwd, env=env, preexec=setup, cleanup=pids.remove)
        # bwrap: it makes the namespaces, setpriv (as root) the identity and capability drop
        setup = _child_setup(self.policy, pids, libc, server_pid=server_pid, worker_id=None, isolate=False)
        return LaunchSpec(self._bwrap_argv(workdir, cwd, worker_id), cwd=cwd, env=env, preexec=setup,
                          cleanup=pids.remove)

    def _bwrap_argv(self, workdir: Path, cwd: Path, worker_id: int | None) -> tuple[str, ...]:
        argv = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        # no fresh tmpfs over /tmp: the toolchain, the workspace or this checkout may live there;
        # /tmp stays read-only like the rest, and TMPDIR points at the worker's own directory
        for mask in self.masked:
            argv += ["--tmpfs", str(mask)]  # mode 0755: only the binds below are inside
        # the directories on the way from a tmpfs to a bind, made searchable: bwrap would make them 0700,
        # and the REPL (not root) could then not reach what is bound there
        made = _synthetic_dirs(self.masked, [*self.exposed, workdir]) - set(self.masked)
        for directory in sorted(made, key=lambda d: len(d.parts)):
            argv += ["--perms", "0755", "--dir", str(directory)]
        for path in self.exposed:
            argv += ["--ro-bind", str(path), str(path)]
        argv += ["--bind", str(workdir), str(workdir),
                 "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--die-with-parent", "--new-session", "--chdir", str(cwd)]
        if os.geteuid() == 0:
            argv += ["--", shutil.which("setpriv") or "setpriv", "--clear-groups", "--inh-caps=-all",
                     "--bounding-set=-all", "--no-new-privs"]
            if worker_id is not None:
                argv += [f"--reuid={worker_id}", f"--regid={worker_id}"]
        argv += ["--", *self.argv]
        return tuple(argv)


def plan_sandbox(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], policy: SandboxPolicy,
                 workdir_parent: Path) -> SandboxPlan:
    """Decide how REPLs will run here, or raise :class:`SandboxError` saying what to change.

    ``workdir_parent`` is where worker directories are made; it must be reachable
    by the REPL too.
    """
    mode = policy.resolved_mode()
    argv = tuple(argv)
    env = dict(env)
    if "ELAN_HOME" not in env and (Path.home() / ".elan").is_dir():
        env["ELAN_HOME"] = str(Path.home() / ".elan")  # HOME becomes the worker's directory
    if mode == "none":
        return SandboxPlan(mode, argv, cwd, env, policy, unprivileged=os.geteuid() != 0, per_worker_ids=False)
    root = os.geteuid() == 0
    needed = [*_needed_paths(argv, cwd or workdir_parent, env), workdir_parent]
    masked: list[Path] = []
    exposed: list[Path] = []
    if mode == "bwrap" and root:
        roots = _exposed_roots(needed)
        masked = _masks(roots)
        exposed = sorted({r for r in roots if any(m == r or m in r.parents for m in masked)},
                         key=lambda p: len(p.parts))
        masked = [m for m in masked if not any(e in m.parents for e in exposed)]
    synthetic = _synthetic_dirs(masked, exposed)
    unreachable = [p for p in needed if not reachable_by_others(p, synthetic)] if root else []
    if unreachable and not policy.allow_root_repl:
        first = unreachable[0]
        blocker = next((p for p in reversed(first.parents) if not _traversable(p, synthetic)), first)
        bwrap_hint = ("install bubblewrap (it hides such directories and binds back only what the REPL needs); "
                      if mode != "bwrap" else "")
        raise SandboxError(
            f"checked code must not run as root, but an unprivileged user cannot reach {first} "
            f"({blocker} is not readable and searchable by others). Fix one of: {bwrap_hint}install the "
            "toolchain and workspace where others can read them (e.g. under /opt or /srv), or open the path "
            f"(chmod o+rx {blocker}); or run the server as an ordinary user. To accept running checked code "
            "with root's user id (capabilities still dropped), pass --allow-root-repl.")
    if unreachable:
        log.warning("REPLs keep root's user id (--allow-root-repl): an unprivileged user cannot reach %s",
                    ", ".join(map(str, unreachable)))
    return SandboxPlan(mode, argv, cwd, env, policy, unprivileged=not root or not unreachable,
                       per_worker_ids=root and not unreachable, masked=tuple(masked), exposed=tuple(exposed))


def describe(mode: str) -> str:
    return {
        "bwrap": "bubblewrap: read-only file system except the worker's directory, no network, own PID namespace, "
                 "process and file-size limits",
        "rlimit": "process and file-size limits and a private network namespace; writes outside the worker "
                  "directory are prevented only by file permissions (world-writable places such as /tmp stay "
                  "writable) and other processes stay visible (install bubblewrap for more)",
        "none": "no isolation: checked code runs with the server's rights",
    }[mode]
