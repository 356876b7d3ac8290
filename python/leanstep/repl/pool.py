"""The warm pool of REPL workers.

Importing a header such as ``import Mathlib`` costs seconds and gigabytes, so a
worker keeps the env of its header and serves every later body on top of it
(header affinity). ``acquire(header)`` returns an idle worker with that header;
else starts one while under ``max_repls``; else evicts the least recently used
idle worker of another header; else waits in a priority queue (interactive
before batch) up to ``queue_wait`` and raises :class:`PoolOverloaded`.

A worker whose request timed out or whose process was lost is replaced in the
background; so is one recycled for memory (RSS above the limit) or age (the
REPL never frees an env). Warm spares for the configured headers are started at
boot and refilled after every replacement, so no request waits for an import
it could have avoided.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from leanstep.repl.process import LaunchSpec, ReplError, ReplLost, ReplProcess, ReplTimeout
from leanstep.repl.protocol import CommandRequest, CommandResponse, ErrorResponse, Message, Request, Response

log = logging.getLogger(__name__)

PREAMBLE_CACHE_PER_WORKER = 64
WORKDIR_PREFIX = "leanstep-worker-"  # + the server's pid, so a later server can remove a killed one's
DEFAULT_IMPORT_SECONDS = 1.0
RSS_POLL_SECONDS = 1.0


class Priority(IntEnum):
    INTERACTIVE = 0  # /suggest: a person is waiting in the editor
    BATCH = 1  # /verify


class PoolOverloaded(RuntimeError):
    """No worker became free within the queue wait; the caller should retry later."""


class PoolClosed(RuntimeError):
    """The pool is shutting down."""


@dataclass(frozen=True)
class PoolSettings:
    max_repls: int = 2
    import_timeout: float = 600.0
    mem_limit_bytes: int = 0  # 0: no RSS recycling
    max_uses: int = 500
    queue_wait: float = 120.0
    warm_headers: tuple[str, ...] = ()
    headers_per_repl: int = 4


Launcher = Callable[[Path], LaunchSpec]
"""Builds the launch spec of a new REPL given the worker's own temporary directory."""


class WorkerState:
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass
class PoolCounters:
    started: int = 0
    start_failures: int = 0
    timeouts: int = 0
    lost: int = 0
    recycled_memory: int = 0
    recycled_uses: int = 0
    evicted: int = 0
    header_loads: int = 0
    overloaded: int = 0
    requests: int = 0


@dataclass(frozen=True)
class PoolStats:
    max_repls: int
    workers_by_state: dict[str, int]
    workers_by_header: dict[str, int]
    queue_depth: int
    counters: PoolCounters
    rss_bytes: int


@dataclass(frozen=True)
class HeaderEnv:
    """A header imported in one REPL: its env id, its messages, what the import cost."""

    env: int
    messages: tuple[Message, ...]
    seconds: float


class Worker:
    """One REPL process holding the envs of up to ``max_headers`` headers and a cache of preamble envs.

    A REPL can import several headers, one env each (as LeanInteract does), so a
    worker switches headers without restarting. ``header``/``header_env`` are the
    ones it was acquired for.
    """

    def __init__(self, worker_id: int, header: str, workdir: Path) -> None:
        self.id = worker_id
        self.name = f"repl-{worker_id}"
        self.header = header
        self.workdir = workdir
        self.state = WorkerState.STARTING
        self.process: ReplProcess | None = None
        self.envs: OrderedDict[str, HeaderEnv] = OrderedDict()
        self.uses = 0
        self.last_used = time.monotonic()
        self.last_rss_check = 0.0
        self.rss = 0
        self.failure: ReplError | None = None
        self._preambles: OrderedDict[tuple[int, str], CommandResponse] = OrderedDict()

    @property
    def header_env(self) -> int:
        return self.envs[self.header].env

    @property
    def header_messages(self) -> tuple[Message, ...]:
        return self.envs[self.header].messages

    def run(self, request: Request, timeout: float) -> Response:
        """Send one request; a timeout or a lost process marks this worker dead and re-raises."""
        try:
            return self.process.send(request, timeout)
        except ReplError as exc:
            self.state = WorkerState.DEAD
            self.failure = exc
            raise

    def preamble(self, text: str, timeout: float) -> CommandResponse:
        """Elaborate ``text`` on the header env once per worker; later calls reuse its env id."""
        key = (self.header_env, hashlib.sha256(text.encode()).hexdigest())
        cached = self._preambles.get(key)
        if cached is not None:
            self._preambles.move_to_end(key)
            return cached
        response = self.run(CommandRequest(text, env=self.header_env), timeout)
        if not isinstance(response, CommandResponse):
            raise ReplLost(f"preamble answered {response!r}", worker=self.name)
        self._preambles[key] = response
        if len(self._preambles) > PREAMBLE_CACHE_PER_WORKER:
            self._preambles.popitem(last=False)
        return response

    def start(self, launcher: Launcher, spawn: Callable[[Callable[[], object]], object], import_timeout: float) -> None:
        self.process = ReplProcess(launcher(self.workdir), name=self.name)
        spawn(self.process.start)
        self.load_header(self.header, import_timeout)

    def load_header(self, header: str, timeout: float) -> HeaderEnv:
        """Import ``header`` in this REPL (a request without env) and remember its env."""
        started = time.monotonic()
        response = self.run(CommandRequest(header), timeout)
        if isinstance(response, ErrorResponse):
            raise ReplLost(f"header was refused: {response.message}", worker=self.name)
        loaded = HeaderEnv(response.env, response.messages, time.monotonic() - started)
        self.envs[header] = loaded
        return loaded

    def close(self) -> None:
        if self.process is not None:
            self.process.close(grace=0.2)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    header: str = field(compare=False)
    since: float = field(default=0.0, compare=False)
    worker: Worker | None = field(default=None, compare=False)
    must_start: bool = field(default=False, compare=False)
    must_import: bool = field(default=False, compare=False)


class ReplPool:
    """Thread-safe pool; every public method may be called from any thread."""

    def __init__(self, settings: PoolSettings, launcher: Launcher):
        self.settings = settings
        self._launcher = launcher
        self._cond = threading.Condition()
        self._workers: list[Worker] = []
        self._waiters: list[_Waiter] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._closed = False
        self._background: set[threading.Thread] = set()
        self._import_seconds: dict[str, float] = {}
        # REPLs are started from one long-lived thread: bwrap --die-with-parent (PR_SET_PDEATHSIG)
        # kills a child when the *thread* that started it exits, not only the process.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="repl-spawn")
        self.counters = PoolCounters()

    # -- public API ----------------------------------------------------------

    def start(self) -> None:
        """Start one warm worker per configured header (each in the background)."""
        with self._cond:
            headers = list(self.settings.warm_headers)[: self.settings.max_repls]
            for header in headers:
                self._spawn_background(header)

    def wait_warm(self, timeout: float) -> bool:
        """Block until no worker is starting (used by tests and benchmarks). True when all are idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(w.state == WorkerState.STARTING for w in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @contextmanager
    def acquire(self, header: str, priority: Priority = Priority.BATCH, wait: float | None = None) -> Iterator[Worker]:
        """Hold a worker whose header env is ``header``'s; released (or replaced) on exit."""
        worker = self._take(header, priority, self.settings.queue_wait if wait is None else wait)
        try:
            yield worker
        finally:
            self._release(worker)

    def stats(self) -> PoolStats:
        with self._cond:
            by_state: dict[str, int] = {s: 0 for s in (WorkerState.STARTING, WorkerState.IDLE, WorkerState.BUSY)}
            by_header: dict[str, int] = {}
            for w in self._workers:
                by_state[w.state] = by_state.get(w.state, 0) + 1
                for header in w.envs or (w.header,):
                    by_header[header] = by_header.get(header, 0) + 1
            rss = sum(w.rss for w in self._workers)
            return PoolStats(self.settings.max_repls, by_state, by_header, len(self._waiters),
                             PoolCounters(**vars(self.counters)), rss)

    def pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in self._workers if w.process is not None and w.process.pid is not None]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop everything: waiters get PoolClosed, every REPL is closed and reaped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._background)
        for thread in threads:
            thread.join(timeout)
        with self._cond:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
        self._spawner.shutdown(wait=False)

    def __enter__(self) -> ReplPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _spawn(self, start: Callable[[], object]) -> None:
        self._spawner.submit(start).result()

    # -- acquisition ---------------------------------------------------------

    def _take(self, header: str, priority: Priority, wait: float) -> Worker:
        deadline = time.monotonic() + wait
        with self._cond:
            if self._closed:
                raise PoolClosed("the REPL pool is shutting down")
            waiter = _Waiter(int(priority), next(self._seq), header, time.monotonic())
            self._waiters.append(waiter)
            self._waiters.sort()
            try:
                while True:
                    if self._closed:
                        raise PoolClosed("the REPL pool is shutting down")
                    self._dispatch()
                    if waiter.worker is not None:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.counters.overloaded += 1
                        raise PoolOverloaded(
                            f"no REPL free for {wait:g} s ({len(self._workers)}/{self.settings.max_repls} busy or "
                            f"starting, {len(self._waiters)} waiting)")
                    self._cond.wait(min(remaining, self._next_eviction_check(waiter)))
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            worker = waiter.worker
        if waiter.must_start:
            self._start_worker(worker)
        elif waiter.must_import:
            try:
                loaded = worker.load_header(header, self.settings.import_timeout)
            except ReplError:
                self._release(worker)
                raise
            with self._cond:
                self.counters.header_loads += 1
                self._import_seconds[header] = loaded.seconds
        return worker

    def _dispatch(self) -> None:
        """Hand idle workers and free capacity to waiters, best priority first (lock held)."""
        capacity_blocked = False
        for waiter in self._waiters:
            if waiter.worker is not None:
                continue
            idle = [w for w in self._workers if w.state == WorkerState.IDLE and waiter.header in w.envs]
            if idle:
                worker = max(idle, key=lambda w: w.last_used)
                worker.state = WorkerState.BUSY
                worker.header = waiter.header
                worker.envs.move_to_end(waiter.header)
                waiter.worker = worker
                continue
            if capacity_blocked:
                continue
            starting = sum(1 for w in self._workers if w.state == WorkerState.STARTING and w.header == waiter.header)
            wanting = sum(1 for x in self._waiters if x.worker is None and x.header == waiter.header and x < waiter)
            if starting > wanting:
                continue  # a worker for this header is on its way; it will be ours
            worker = self._make_room(waiter)
            if worker is None:
                capacity_blocked = True  # lower-priority waiters may not take capacity ahead of this one
                continue
            if worker.state == WorkerState.IDLE:  # an idle REPL with room imports this header too
                waiter.must_import = True
            else:
                waiter.must_start = True
            worker.state = WorkerState.BUSY
            worker.header = waiter.header
            waiter.worker = worker

    def import_seconds(self, header: str) -> float:
        """What starting a worker for ``header`` cost last time (a guess before the first start)."""
        return self._import_seconds.get(header, DEFAULT_IMPORT_SECONDS)

    def _queue_rent(self, header: str) -> tuple[float, int]:
        """Seconds ``header``'s queued requests have waited so far, all together, and how many they are."""
        now = time.monotonic()
        waiting = [now - x.since for x in self._waiters if x.worker is None and x.header == header]
        return sum(waiting), len(waiting)

    def _next_eviction_check(self, waiter: _Waiter) -> float:
        """Seconds until ``waiter``'s header may take another REPL (lock held), so a timed wait wakes for it."""
        rent, waiting = self._queue_rent(waiter.header)
        return max(0.01, (self.import_seconds(waiter.header) - rent) / max(waiting, 1))

    def _make_room(self, waiter: _Waiter) -> Worker | None:
        """A worker for ``waiter``'s header: a new one, or an idle one that imports it (lock held).

        A header import costs seconds, so this follows the ski-rental rule: while
        a header is loaded in some (busy) worker, its queued requests wait for it
        until their waiting times add up to what an import of that header costs;
        then the header takes another REPL. A header loaded nowhere takes the least
        recently used idle REPL at once. That REPL imports the header beside its
        others (so later switches are free), or, when it already holds
        ``headers_per_repl`` headers, is replaced by a fresh one.
        """
        header = waiter.header
        if len(self._workers) < self.settings.max_repls:
            return self._reserve(header)
        idle = [w for w in self._workers if w.state == WorkerState.IDLE]
        if not idle:
            return None
        loaded_somewhere = any(header in w.envs or w.header == header for w in self._workers)
        if loaded_somewhere and self._queue_rent(header)[0] < self.import_seconds(header):
            return None
        victim = min(idle, key=lambda w: w.last_used)
        if len(victim.envs) < self.settings.headers_per_repl:
            return victim
        self._workers.remove(victim)
        self.counters.evicted += 1
        self._close_background(victim)
        return self._reserve(header)

    def _reserve(self, header: str) -> Worker:
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        worker = Worker(next(self._ids), header, workdir)
        self._workers.append(worker)
        return worker

    def _start_worker(self, worker: Worker) -> None:
        """Start the REPL and import the header (outside the lock). Failure frees the slot and re-raises."""
        try:
            worker.start(self._launcher, self._spawn, self.settings.import_timeout)
        except ReplError as exc:
            log.warning("REPL start failed for header %r: %s", worker.header[:80], exc)
            with self._cond:
                self.counters.start_failures += 1
                if worker in self._workers:
                    self._workers.remove(worker)
                self._cond.notify_all()
            worker.close()
            raise
        with self._cond:
            self.counters.started += 1
            self._import_seconds[worker.header] = worker.envs[worker.header].seconds

    # -- release and replacement ---------------------------------------------

    def _release(self, worker: Worker) -> None:
        worker.uses += 1
        worker.last_used = time.monotonic()
        recycle_reason = None
        if worker.state != WorkerState.DEAD:
            if worker.uses >= self.settings.max_uses:
                recycle_reason = "uses"
            elif self.settings.mem_limit_bytes and worker.last_used - worker.last_rss_check >= RSS_POLL_SECONDS:
                worker.last_rss_check = worker.last_used
                worker.rss = worker.process.rss_bytes() if worker.process else 0
                if worker.rss > self.settings.mem_limit_bytes:
                    recycle_reason = "memory"
        with self._cond:
            self.counters.requests += 1
            if worker.state == WorkerState.DEAD or recycle_reason is not None:
                if isinstance(worker.failure, ReplTimeout):
                    self.counters.timeouts += 1
                elif worker.state == WorkerState.DEAD:
                    self.counters.lost += 1
                elif recycle_reason == "uses":
                    self.counters.recycled_uses += 1
                else:
                    self.counters.recycled_memory += 1
                if worker in self._workers:
                    self._workers.remove(worker)
                self._close_background(worker)
                if not self._closed:
                    self._spawn_background(worker.header)
            elif worker in self._workers:
                worker.state = WorkerState.IDLE
            self._cond.notify_all()

    def _spawn_background(self, header: str) -> None:
        """Start a replacement or spare in a thread (lock held). Skipped when the pool is full."""
        if self._closed or len(self._workers) >= self.settings.max_repls:
            return
        worker = self._reserve(header)

        def run() -> None:
            try:
                self._start_worker(worker)
            except ReplError:
                return
            finally:
                with self._cond:
                    self._background.discard(threading.current_thread())
            with self._cond:
                if worker in self._workers and worker.state == WorkerState.STARTING:
                    worker.state = WorkerState.IDLE
                self._cond.notify_all()

        thread = threading.Thread(target=run, name=f"start-{worker.name}", daemon=True)
        self._background.add(thread)
        thread.start()

    def _close_background(self, worker: Worker) -> None:
        """Close a worker off the lock (lock held); shutdown joins these threads."""
        worker.state = WorkerState.DEAD

        def run() -> None:
            worker.close()
            with self._cond:
                self._background.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"close-{worker.name}", daemon=True)
        self._background.add(thread)
        thread.start()
