"""One REPL subprocess: spawn, framing, wall-clock timeout, kill, memory.

The REPL has no timeout and no cancellation, dies on bad input, and may hang
or crash on pathological proofs. So every exchange here is bounded: a request
gets its response within ``timeout`` seconds, or the whole process group is
killed and :class:`ReplTimeout` raised; EOF, exit, non-JSON or extra output
means the process is lost (:class:`ReplLost`, with the tail of its stderr).
After either error the process is dead and reaped: the caller replaces it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

import psutil

from leanstep.repl.protocol import ProtocolError, Request, Response, decode_response, encode_request

DELIMITER = b"\n\n"
MAX_RESPONSE_BYTES = 512 * 1024 * 1024
STDERR_TAIL_BYTES = 4096


class ReplError(RuntimeError):
    """Base of process failures; names the worker so logs say which REPL failed."""

    def __init__(self, message: str, *, worker: str = "repl") -> None:
        super().__init__(f"{worker}: {message}")
        self.worker = worker


class ReplTimeout(ReplError):
    """No response within the wall-clock limit; the process was killed."""

    def __init__(self, limit: float, *, worker: str = "repl") -> None:
        super().__init__(f"no response within {limit:g} s; process killed", worker=worker)
        self.limit = limit


class ReplLost(ReplError):
    """The process died, closed stdout, or printed something that is not a response."""

    def __init__(self, reason: str, *, worker: str = "repl", stderr_tail: str = "", returncode: int | None = None):
        detail = f"{reason} (exit status {returncode})" if returncode is not None else reason
        if stderr_tail:
            detail += f"; stderr: {stderr_tail.strip()[-500:]}"
        super().__init__(detail, worker=worker)
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.returncode = returncode


@dataclass(frozen=True)
class LaunchSpec:
    """How to start a REPL: argv, working directory, environment, a pre-exec hook (limits) and a cleanup."""

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    preexec: Callable[[], None] | None = field(default=None, compare=False)
    cleanup: Callable[[], None] | None = field(default=None, compare=False)


def _pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    """stdin and stdout of a process started with both piped (as every REPL is)."""
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError("the REPL process was started without pipes")
    return proc.stdin, proc.stdout


class ReplProcess:
    """A REPL child process in its own session (process group), spoken to one request at a time."""

    def __init__(self, spec: LaunchSpec | Sequence[str], *, name: str = "repl") -> None:
        self.spec = spec if isinstance(spec, LaunchSpec) else LaunchSpec(tuple(spec))
        self.name = name
        self.requests_sent = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: BinaryIO | None = None
        self._buffer = bytearray()
        self._selector: selectors.BaseSelector | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ReplProcess:
        if self._proc is not None:
            raise RuntimeError(f"{self.name}: already started")
        # kept open for the life of the process (stderr_tail reads it); _release closes it
        stderr_file = tempfile.TemporaryFile(prefix="leanstep-stderr-")  # noqa: SIM115
        self._stderr_file = stderr_file
        try:
            # the sandbox's limits are set in the child before exec; the pool starts every REPL from one
            # dedicated thread, so no other thread of the server holds a lock the child could need
            self._proc = subprocess.Popen(
                list(self.spec.argv), cwd=self.spec.cwd, env=None if self.spec.env is None else dict(self.spec.env),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr_file,
                start_new_session=True, preexec_fn=self.spec.preexec, close_fds=True,  # noqa: PLW1509
            )
        except (OSError, subprocess.SubprocessError) as exc:  # a failing pre-exec hook is a SubprocessError
            stderr_file.close()
            if self.spec.cleanup is not None:
                self.spec.cleanup()
            raise ReplLost(f"cannot start {self.spec.argv[0]!r}: {exc}", worker=self.name) from exc
        stdout = _pipes(self._proc)[1]
        os.set_blocking(stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(stdout.fileno(), selectors.EVENT_READ)
        return self

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self, grace: float = 1.0) -> None:
        """Close stdin (the REPL exits on EOF), then kill the group if it lingers; always reaps."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with suppress(OSError, subprocess.TimeoutExpired):
                _pipes(proc)[0].close()
                proc.wait(timeout=grace)
        self._kill_group()
        self._release()

    def kill(self) -> None:
        self._kill_group()
        self._release()

    def interrupt(self) -> None:
        """Kill the process group from another thread, leaving the pipes to the thread in :meth:`send`
        (it sees the process end and raises :class:`ReplLost`, which releases them)."""
        self._kill_group()

    def __enter__(self) -> ReplProcess:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._kill_group()

    # -- exchange ----------------------------------------------------------

    def send(self, request: Request, timeout: float) -> Response:
        """Send one request and return its decoded response within ``timeout`` seconds."""
        payload = encode_request(request)  # raises ProtocolError before anything is written
        return self._exchange(payload, timeout)

    def _exchange(self, payload: bytes, timeout: float) -> Response:
        proc, selector = self._proc, self._selector
        if proc is None or selector is None or proc.poll() is not None:
            raise self._lost("process is not running")
        if self._buffer:
            raise self._lost("unexpected output between requests (desynchronised)")
        deadline = time.monotonic() + timeout
        self.requests_sent += 1
        stdin, stdout = _pipes(proc)
        try:
            stdin.write(payload)
            stdin.flush()
        except OSError:
            raise self._lost("stdin closed while sending") from None
        raw = self._read_frame(stdout.fileno(), selector, deadline, timeout)
        try:
            return decode_response(raw)
        except ProtocolError as exc:
            raise self._lost(f"output is not a REPL response: {exc}") from None

    def _read_frame(self, fd: int, selector: selectors.BaseSelector, deadline: float, timeout: float) -> bytes:
        scan_from = 0
        while True:
            end = self._buffer.find(DELIMITER, scan_from)
            if end >= 0:
                frame = bytes(self._buffer[:end])
                del self._buffer[: end + len(DELIMITER)]
                if self._buffer:
                    raise self._lost("more output than one response (desynchronised)")
                return frame
            scan_from = max(0, len(self._buffer) - 1)
            if len(self._buffer) > MAX_RESPONSE_BYTES:
                raise self._lost(f"response exceeds {MAX_RESPONSE_BYTES} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ReplTimeout(timeout, worker=self.name)
            if not selector.select(remaining):
                continue
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise self._lost("stdout closed (process exited)")
            self._buffer += chunk

    # -- inspection --------------------------------------------------------

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (``lake env`` runs the REPL as a child)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return 0
        try:
            root = psutil.Process(proc.pid)
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with suppress(psutil.Error):  # a child that just exited
                    total += child.memory_info().rss
            return total
        except psutil.Error:
            return 0

    def stderr_tail(self) -> str:
        if self._stderr_file is None or self._stderr_file.closed:
            return ""
        try:
            size = os.fstat(self._stderr_file.fileno()).st_size
            self._stderr_file.seek(max(0, size - STDERR_TAIL_BYTES))
            return self._stderr_file.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- internals ---------------------------------------------------------

    def _lost(self, reason: str) -> ReplLost:
        proc = self._proc
        returncode = None
        if proc is not None:
            with suppress(subprocess.TimeoutExpired):
                returncode = proc.wait(timeout=0.2)
        tail = self.stderr_tail()
        self.kill()
        return ReplLost(reason, worker=self.name, stderr_tail=tail, returncode=returncode)

    def _kill_group(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _release(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with suppress(OSError):
                        stream.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._buffer.clear()
        if proc is not None and self.spec.cleanup is not None:
            self.spec.cleanup()
