"""Fault and sandbox-probe directives (`-- sim: NAME ARG` comments, `sim_NAME ARG` tactics).

Imported lazily: the normal request path never loads this module.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the REPL imports this module lazily; no cycle at run time
    from .repl import Repl

CRASH_STATUS = 134
BIGFILE_NAME = "leanstep-sim-bigfile.bin"
FORK_CHILD_SECONDS = 10.0


def crash(reason: str) -> None:
    """Die like an aborting Lean process: a line on stderr and exit status 134."""
    with suppress(OSError, ValueError):  # stdout may be a closed pipe already
        sys.stdout.flush()
    try:
        sys.stderr.write(f"INTERNAL PANIC: leanstep.sim simulated crash ({reason})\n")
        sys.stderr.flush()
    finally:
        os._exit(CRASH_STATUS)


def hang() -> None:
    while True:
        time.sleep(3600)


def _number(arg: str) -> float:
    v = float(arg.split(maxsplit=1)[0])
    if v < 0 or math.isnan(v):
        raise ValueError(arg)
    return v


def run(repl: Repl, name: str, arg: str) -> tuple[str, str] | None:
    """Apply one directive; return a (severity, message) to report, or None."""
    try:
        if name == "delay":
            time.sleep(_number(arg))
            return None
        if name == "hang":
            hang()
        if name == "crash":
            crash("directive")
        if name == "grow":
            repl.grow(_number(arg))
            return None
        if name == "garbage":
            repl.garbage = True
            return None
        if name == "huge":
            repl.huge = max(repl.huge, int(_number(arg)))
            return None
        if name == "write":
            return ("info", "sim write " + _write(arg))
        if name == "connect":
            return ("info", "sim connect " + _connect(arg))
        if name == "fork":
            return ("info", "sim fork " + _fork(int(_number(arg))))
        if name == "bigfile":
            return ("info", "sim bigfile " + _bigfile(_number(arg)))
        if name == "read":
            return ("info", "sim read " + _read(arg))
        if name == "remount":
            return ("info", "sim remount " + _remount(arg))
        if name == "signal":
            return ("info", "sim signal " + _signal(int(_number(arg))))
        if name == "ptrace":
            return ("info", "sim ptrace " + _ptrace(int(_number(arg))))
        if name == "identity":
            return ("info", "sim identity " + _identity())
        if name == "getenv":
            return ("info", "sim getenv " + _getenv(arg))
    except (ValueError, IndexError):
        return ("error", f"sim: bad argument for '{name}': {arg!r}")
    return ("error", f"sim: unknown directive '{name}'")


def _write(path: str) -> str:
    path = path.strip()
    try:
        with open(path, "w") as f:
            f.write("leanstep-sim\n")
        return f"{path}: ok"
    except OSError as e:
        return f"{path}: failed: {e}"


def _connect(target: str) -> str:
    import socket
    target = target.strip()
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
            return f"{target}: ok"
    except (OSError, ValueError) as e:
        return f"{target}: failed: {e}"


def _fork(n: int) -> str:
    parent = os.getpid()
    ok = 0
    err = ""
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as e:
            err = f" ({e})"
            break
        if pid == 0:  # child: sleep until the parent is gone or the time is up
            try:
                deadline = time.monotonic() + FORK_CHILD_SECONDS
                while time.monotonic() < deadline and os.getppid() == parent:
                    time.sleep(0.1)
            finally:
                os._exit(0)
        ok += 1
    return f"{n}: started {ok}{err}"


def _bigfile(mb: float) -> str:
    import signal
    size = int(mb * 1024 * 1024)
    chunk = b"\0" * min(size, 1 << 20) if size else b""
    written = 0
    old = None
    if hasattr(signal, "SIGXFSZ"):
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with open(BIGFILE_NAME, "wb") as f:
            while written < size:
                part = chunk[: size - written]
                f.write(part)
                f.flush()
                written += len(part)
        result = f"{mb:g}: ok"
    except OSError as e:
        result = f"{mb:g}: failed after {written} bytes: {e}"
    finally:
        if old is not None:
            signal.signal(signal.SIGXFSZ, old)
        with suppress(OSError):
            os.unlink(BIGFILE_NAME)
    return result


def _read(path: str) -> str:
    path = path.strip()
    try:
        with open(path, "rb") as f:
            f.read(1)
        return f"{path}: ok"
    except OSError as e:
        return f"{path}: failed: {e}"


MS_REMOUNT = 32
MS_BIND = 4096


def _remount(path: str) -> str:
    """Try to make a read-only mount writable again (what `mount -o remount,bind,rw` does)."""
    import ctypes

    path = path.strip() or "/"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND, None) == 0:
        return f"{path}: ok"
    return f"{path}: failed: {os.strerror(ctypes.get_errno())}"


def _signal(pid: int) -> str:
    """Signal 0 performs the kernel's permission check for sending a signal without sending one."""
    try:
        os.kill(pid, 0)
        return f"{pid}: ok"
    except OSError as e:
        return f"{pid}: failed: {e}"


PTRACE_SEIZE = 0x4206
PTRACE_DETACH = 17


def _ptrace(pid: int) -> str:
    """Attach without stopping the tracee (PTRACE_SEIZE), and detach at once if that worked."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        return f"{pid}: ok"
    return f"{pid}: failed: {os.strerror(ctypes.get_errno())}"


def _identity() -> str:
    """User and group ids and the kernel's view of capabilities and no_new_privs."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs"):
                    fields[key] = value.strip()
    except OSError as e:
        return f"failed: {e}"
    uids = ",".join(str(i) for i in os.getresuid())
    gids = ",".join(str(i) for i in os.getresgid())
    groups = ",".join(str(g) for g in os.getgroups())
    status = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"uid={uids} gid={gids} groups=[{groups}] {status}"


def _getenv(name: str) -> str:
    """Whether a variable is visible (its value is never echoed)."""
    name = name.strip()
    return f"{name}: {'set' if name in os.environ else 'unset'}"
