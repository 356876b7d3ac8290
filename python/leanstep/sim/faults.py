"""Fault and sandbox-probe directives (`-- sim: NAME ARG` comments, `sim_NAME ARG` tactics).

Imported lazily: the normal request path never loads this module.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

CRASH_STATUS = 134
BIGFILE_NAME = "leanstep-sim-bigfile.bin"
FORK_CHILD_SECONDS = 10.0


def crash(reason: str) -> None:
    """Die like an aborting Lean process: a line on stderr and exit status 134."""
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.write(f"INTERNAL PANIC: leanstep.sim simulated crash ({reason})\n")
        sys.stderr.flush()
    finally:
        os._exit(CRASH_STATUS)


def hang() -> None:
    while True:
        time.sleep(3600)


def _number(arg: str) -> float:
    v = float(arg.split()[0])
    if v < 0 or v != v:
        raise ValueError(arg)
    return v


def run(repl, name: str, arg: str) -> Optional[tuple[str, str]]:
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
        try:
            os.unlink(BIGFILE_NAME)
        except OSError:
            pass
    return result
