"""The warm pool of REPL workers.

Importing a header such as ``import Mathlib`` costs seconds and gigabytes, so a
worker keeps the env of its header and serves every later body on top of it
(header affinity). ``acquire(header)`` returns an idle worker with that header;
else an idle worker of the header's group imports it; else starts one while
under ``max_repls``; else replaces the least recently used idle worker; else
waits in a priority queue (interactive before batch) up to ``queue_wait`` and
raises :class:`PoolOverloaded`. Which worker takes which header is the rule
of ``repl.placement`` (a stack algorithm in the pool's size, so a bigger pool
never imports more).

A worker whose request timed out or whose process was lost is replaced in the
background; so is one recycled for memory (RSS above the limit) or age (the
REPL never frees an env). Memory is read by a watcher thread once a second, off
the path between one request and the next (reading a process tree's RSS scans
``/proc``): an idle worker above the limit is recycled at once, a busy one when
it is released. Warm spares for the configured headers are started at
boot and refilled after every replacement, so no request waits for an import
it could have avoided. The REPL processes of the other slots are launched at
boot too, without a header, so the first request on each pays its import but
not the process start (seconds for ``lake env``, a sandbox's set-up).

Every header import, the first one of a worker as much as a second header
imported into an idle worker, is bounded by ``import_timeout``; a header that
exceeds it raises :class:`HeaderImportTimeout` and its REPL is replaced by one
for a header it already held (never by another try at the failed header).

Starting a REPL means importing its header: seconds and gigabytes with
Mathlib. So once the pool has been filled, every further start (a replacement,
an eviction) draws on ``max_restarts_per_minute``; past it, replacements are
deferred until the minute frees a start (the pool always refills), and a
request that could only be served by a new REPL waits for that, or gets
:class:`RestartLimited` at once when the wait would outlast its own.

``shutdown`` is prompt: it kills every REPL at once, so a request running on
one is answered (``ReplLost``) instead of holding the shutdown.
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
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from functools import partial
from pathlib import Path

from leanstep.lru import LruCache
from leanstep.repl.placement import HeaderGroups, holder, importer, victim
from leanstep.repl.process import LaunchSpec, ReplError, ReplLost, ReplProcess, ReplTimeout
from leanstep.repl.protocol import CommandRequest, CommandResponse, ErrorResponse, Message, Request, Response

log = logging.getLogger(__name__)

PREAMBLE_CACHE_PER_WORKER = 64
GOAL_STATES_PER_WORKER = 1024  # proof states kept per REPL by recipe (a call's goal, a session's states): no replay
PIN_WAIT_SECONDS = 1.0  # how long a request waits for the busy REPL it prefers before it takes another
WORKDIR_PREFIX = "leanstep-worker-"  # + the server's pid, so a later server can remove a killed one's
DEFAULT_IMPORT_SECONDS = 1.0
WATCH_SECONDS = 1.0  # how often the watcher looks at every REPL: dead idle ones, memory
RESTART_WINDOW_SECONDS = 60.0


class Priority(IntEnum):
    INTERACTIVE = 0  # /suggest: a person is waiting in the editor
    BATCH = 1  # /verify


class PoolOverloaded(RuntimeError):
    """No worker became free within the queue wait; the caller should retry later."""


class RestartLimited(PoolOverloaded):
    """Serving the request needs a new REPL, and the restart budget allows none before the request's wait ends."""


class PoolClosed(RuntimeError):
    """The pool is shutting down."""


IMPORT_TIMEOUT_ORIGIN = "--import-timeout"


@dataclass(frozen=True)
class ImportLimit:
    """The wall-clock limit of one header import and whose limit it is, for the message of its timeout."""

    seconds: float
    origin: str = IMPORT_TIMEOUT_ORIGIN


class HeaderImportTimeout(ReplTimeout):
    """A header import did not finish within ``import_timeout``; the REPL was killed."""

    def __init__(self, limit: float, header: str, *, worker: str = "repl", origin: str = IMPORT_TIMEOUT_ORIGIN) -> None:
        ReplError.__init__(self, f"header import did not finish within {limit:g} s ({origin}); "
                                 "process killed", worker=worker)
        self.limit = limit
        self.header = header
        self.origin = origin


@dataclass(frozen=True)
class PoolSettings:
    max_repls: int = 2
    import_timeout: float = 600.0
    mem_limit_bytes: int = 0  # 0: no RSS recycling
    max_uses: int = 500
    queue_wait: float = 120.0
    warm_headers: tuple[str, ...] = ()
    headers_per_repl: int = 4
    max_restarts_per_minute: int | None = None  # None: no limit; else REPL starts per minute once the pool was full
    restart_window_s: float = RESTART_WINDOW_SECONDS  # the "minute" of max_restarts_per_minute (shorter in tests)


Launcher = Callable[[Path], LaunchSpec]
"""Builds the launch spec of a new REPL given the worker's own temporary directory."""


class WorkerState(Enum):
    """Where a worker is in its life; ``PoolStats`` reports the live ones by their values."""

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
    restarts_deferred: int = 0  # replacements put off by the restart budget
    restart_limited: int = 0  # requests answered RestartLimited


@dataclass(frozen=True)
class PoolStats:
    max_repls: int
    workers_by_state: dict[str, int]  # WorkerState values (starting, idle, busy) -> workers
    workers_by_header: dict[str, int]
    queue_depth: int
    counters: PoolCounters
    rss_bytes: int


@dataclass(frozen=True)
class PreambleEnv:
    """A preamble elaborated on a worker's header env; ``cached``: answered without a REPL command."""

    response: CommandResponse
    cached: bool

    @property
    def env(self) -> int:
        return self.response.env


@dataclass(frozen=True)
class GoalState:
    """A proof state a worker's REPL holds (the goal at an editor's call, a session's state) and its goals."""

    proof_state: int
    goals: tuple[str, ...]

    @property
    def goal(self) -> str:
        """The goals as one text, as Lean prints several (blank-line separated)."""
        return "\n\n".join(self.goals)


@dataclass(frozen=True)
class HeaderEnv:
    """A header imported in one REPL: its env id, its messages, what the import cost."""

    env: int
    messages: tuple[Message, ...]
    seconds: float


class Worker:
    """One REPL process holding the envs of up to ``max_headers`` headers and a cache of preamble envs.

    A REPL can import several headers, one env each (as LeanInteract does), so a
    worker switches headers without restarting: those of its ``group``
    (``repl.placement``). ``header``/``header_env`` are the ones it was acquired for.
    """

    def __init__(self, worker_id: int, header: str, workdir: Path, group: int = 0, *,
                 preamble_slots: int = PREAMBLE_CACHE_PER_WORKER, goal_slots: int = GOAL_STATES_PER_WORKER) -> None:
        self.id = worker_id
        self.name = f"repl-{worker_id}"
        self.header = header
        self.group = group
        self.workdir = workdir
        self.state = WorkerState.STARTING
        self.process: ReplProcess | None = None
        self.envs: OrderedDict[str, HeaderEnv] = OrderedDict()
        self.uses = 0
        self.last_used = time.monotonic()
        self.rss = 0  # resident memory when the pool's watcher last read it
        self.over_memory = False  # the watcher found it above the limit while it was busy: recycle on release
        self.failure: ReplError | None = None
        self._preambles: LruCache[tuple[int, str], CommandResponse] = LruCache(preamble_slots)
        self._goal_states: LruCache[str, GoalState] = LruCache(goal_slots)
        self._goal_lock = threading.Lock()
        self._lifecycle = threading.Lock()  # orders start() against interrupt()/close() from the shutdown
        self._stopped = False

    @property
    def header_env(self) -> int:
        return self.envs[self.header].env

    @property
    def header_messages(self) -> tuple[Message, ...]:
        return self.envs[self.header].messages

    def run(self, request: Request, timeout: float) -> Response:
        """Send one request; a timeout or a lost process marks this worker dead and re-raises."""
        if self.process is None:
            raise ReplLost("the REPL was never started", worker=self.name)
        try:
            return self.process.send(request, timeout)
        except ReplError as exc:
            self.state = WorkerState.DEAD
            self.failure = exc
            raise

    def preamble(self, text: str, timeout: float) -> PreambleEnv:
        """Elaborate ``text`` on the header env once per worker; later calls reuse its env id."""
        key = (self.header_env, hashlib.sha256(text.encode()).hexdigest())
        cached = self._preambles.get(key)
        if cached is not None:
            return PreambleEnv(cached, cached=True)
        response = self.run(CommandRequest(text, env=self.header_env), timeout)
        if not isinstance(response, CommandResponse):
            raise ReplLost(f"preamble answered {response!r}", worker=self.name)
        self._preambles.put(key, response)
        return PreambleEnv(response, cached=False)

    def goal_state(self, key: str) -> GoalState | None:
        """A proof state this REPL built earlier under ``key`` (ids are only valid in this process).

        Keys name how a state is built (goal context, then tactics), never a REPL's ids, so the
        same key on another worker is the same state once that worker has built it.
        """
        with self._goal_lock:
            return self._goal_states.get(key)

    def remember_goal_state(self, key: str, state: GoalState) -> None:
        with self._goal_lock:
            self._goal_states.put(key, state)

    def rss_bytes(self) -> int:
        """Resident memory of this worker's REPL (and its children) now."""
        return self.process.rss_bytes() if self.process is not None else 0

    def start(self, launcher: Launcher, spawn: Callable[[Callable[[], object]], object], limit: ImportLimit) -> None:
        """Start the REPL (or adopt the one the pool launched ahead for it, if it is alive) and import the header."""
        with self._lifecycle:
            if self._stopped:
                raise ReplLost("the pool shut down before this REPL started", worker=self.name)
            ahead = self.process
            if ahead is not None and ahead.alive:
                ahead.name = self.name
            else:
                if ahead is not None:
                    ahead.close(grace=0)
                self.process = ReplProcess(launcher(self.workdir), name=self.name)
                spawn(self.process.start)
        self.load_header(self.header, limit)

    def load_header(self, header: str, limit: ImportLimit) -> HeaderEnv:
        """Import ``header`` in this REPL (a request without env) and remember its env; within ``limit``."""
        started = time.monotonic()
        try:
            response = self.run(CommandRequest(header), limit.seconds)
        except ReplTimeout:
            raise HeaderImportTimeout(limit.seconds, header, worker=self.name, origin=limit.origin) from None
        if isinstance(response, ErrorResponse):
            raise ReplLost(f"header was refused: {response.message}", worker=self.name)
        if not isinstance(response, CommandResponse):
            raise ReplLost(f"header import answered {type(response).__name__}", worker=self.name)
        loaded = HeaderEnv(response.env, response.messages, time.monotonic() - started)
        self.envs[header] = loaded
        return loaded

    def interrupt(self) -> None:
        """Kill the REPL now, from any thread: a thread in :meth:`run` gets ``ReplLost``; a start not begun is
        refused."""
        with self._lifecycle:
            self._stopped = True
            process = self.process
        if process is not None:
            process.interrupt()

    def close(self, grace: float = 0.2) -> None:
        with self._lifecycle:
            self._stopped = True
            process = self.process
        if process is not None:
            process.close(grace=grace)
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
    restart_at: float = field(default=0.0, compare=False)  # > 0: needs a new REPL, which the budget allows then
    budget_blocked: bool = field(default=False, compare=False)  # the restart budget kept it waiting at some point
    prefer: int | None = field(default=None, compare=False)  # id of the worker it waits for while that one lives
    prefer_until: float = field(default=0.0, compare=False)  # after this, any worker with the header will do


def _new_workdir() -> Path:
    """A worker's own directory; its name carries the server's pid, so a later server can remove a killed one's."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


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
        self._groups = HeaderGroups(settings.headers_per_repl)
        self._starts = 0  # REPL starts so far; those after the first max_repls are restarts
        self._restarts: deque[float] = deque()  # when the restarts of the last minute happened
        self._deferred: list[str] = []  # headers of replacements the restart budget put off
        self._refill_timer: threading.Timer | None = None
        # REPLs are started from one long-lived thread: bwrap --die-with-parent (PR_SET_PDEATHSIG)
        # kills a child when the *thread* that started it exits, not only the process.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="repl-spawn")
        self._stopping = threading.Event()
        self._ahead: list[tuple[Path, ReplProcess]] = []  # processes launched for slots no worker fills yet
        self.counters = PoolCounters()

    # -- public API ----------------------------------------------------------

    def start(self) -> None:
        """Start one warm worker per configured header (each in the background), and the watcher."""
        with self._cond:
            headers = list(self.settings.warm_headers)[: self.settings.max_repls]
            for header in headers:
                self._spawn_background(header)
            free = self.settings.max_repls - len(self._workers)
        for _ in range(free):
            self._spawner.submit(self._launch_ahead)
        threading.Thread(target=self._watch, name="repl-watch", daemon=True).start()

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
    def acquire(self, header: str, priority: Priority = Priority.BATCH, wait: float | None = None,
                import_limit: ImportLimit | None = None, prefer: int | None = None) -> Iterator[Worker]:
        """Hold a worker whose header env is ``header``'s; released (or replaced) on exit.

        An import this acquisition starts runs within ``import_limit`` when it is shorter than
        ``--import-timeout`` (a request's own timeout bounds its header too, as Kimina's does).

        ``prefer``: the id of a worker that holds state this request wants (a proof session's
        pinned REPL). While that worker lives and holds ``header``, the request takes it when
        it is idle and waits for it up to ``PIN_WAIT_SECONDS`` when it is busy; after that, or
        once the worker is gone (lost, recycled, evicted), any worker will do, and the caller
        rebuilds its state there.
        """
        limit = self._import_limit
        if import_limit is not None and import_limit.seconds < limit.seconds:
            limit = import_limit
        worker = self._take(header, priority, self.settings.queue_wait if wait is None else wait, limit, prefer)
        try:
            yield worker
        finally:
            self._release(worker)

    def stats(self) -> PoolStats:
        with self._cond:
            by_state = dict.fromkeys((WorkerState.STARTING.value, WorkerState.IDLE.value, WorkerState.BUSY.value), 0)
            by_header: dict[str, int] = {}
            for w in self._workers:
                by_state[w.state.value] = by_state.get(w.state.value, 0) + 1
                for header in w.envs or (w.header,):
                    by_header[header] = by_header.get(header, 0) + 1
            rss = sum(w.rss for w in self._workers)
            return PoolStats(self.settings.max_repls, by_state, by_header, len(self._waiters),
                             PoolCounters(**vars(self.counters)), rss)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` began: failures from then on are the shutdown's doing."""
        return self._closed

    def pids(self) -> list[int]:
        with self._cond:
            processes = [w.process for w in self._workers if w.process is not None] + [p for _, p in self._ahead]
            return [p.pid for p in processes if p.pid is not None]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop everything within about ``timeout`` s: waiters get PoolClosed, every REPL is killed and reaped.

        REPLs are killed first, busy ones included: a request running on one gets
        ``ReplLost`` at once and releases it, and an import in progress ends, so
        nothing here waits for a proof or an import to finish.
        """
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            self._closed = True
            if self._refill_timer is not None:
                self._refill_timer.cancel()
                self._refill_timer = None
            self._deferred.clear()
            self._cond.notify_all()
            workers = list(self._workers)
        for worker in workers:
            worker.interrupt()
        with self._cond:
            while any(w.state in (WorkerState.STARTING, WorkerState.BUSY) for w in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            workers, self._workers = self._workers, []
            ahead, self._ahead = self._ahead, []
            threads = list(self._background)
        for worker in workers:
            worker.close(grace=0)
        for workdir, process in ahead:
            process.close(grace=0)
            shutil.rmtree(workdir, ignore_errors=True)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._spawner.shutdown(wait=False)

    def __enter__(self) -> ReplPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _spawn(self, start: Callable[[], object]) -> None:
        self._spawner.submit(start).result()

    # -- acquisition ---------------------------------------------------------

    @property
    def _import_limit(self) -> ImportLimit:
        return ImportLimit(self.settings.import_timeout)

    def _take(self, header: str, priority: Priority, wait: float, limit: ImportLimit,
              prefer: int | None = None) -> Worker:
        deadline = time.monotonic() + wait
        with self._cond:
            if self._closed:
                raise PoolClosed("the REPL pool is shutting down")
            waiter = _Waiter(int(priority), next(self._seq), header, time.monotonic(), prefer=prefer,
                             prefer_until=time.monotonic() + PIN_WAIT_SECONDS)
            self._waiters.append(waiter)
            self._waiters.sort()
            try:
                while True:
                    if self._closed:
                        raise PoolClosed("the REPL pool is shutting down")
                    self._dispatch()
                    if waiter.worker is not None:
                        break
                    now = time.monotonic()
                    remaining = deadline - now
                    if (waiter.restart_at > deadline and not self._servable_without_start(header)) \
                            or (remaining <= 0 and waiter.budget_blocked):
                        self.counters.restart_limited += 1
                        raise RestartLimited(self._restart_limit_message(header, wait))
                    if remaining <= 0:
                        self.counters.overloaded += 1
                        raise PoolOverloaded(
                            f"no REPL free for {wait:g} s ({len(self._workers)}/{self.settings.max_repls} busy or "
                            f"starting, {len(self._waiters)} waiting)")
                    wake = min(remaining, self._next_eviction_check(waiter))
                    if waiter.prefer is not None and waiter.prefer_until > now:
                        wake = min(wake, waiter.prefer_until - now)
                    if waiter.restart_at:
                        wake = min(wake, max(0.01, waiter.restart_at - now))
                    self._cond.wait(wake)
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            worker = waiter.worker
        if waiter.must_start:
            self._start_worker(worker, limit)
        elif waiter.must_import:
            try:
                loaded = worker.load_header(header, limit)
            except ReplError:
                # the replacement serves what this REPL held before, never another try at the failed header
                worker.header = next(reversed(worker.envs), worker.header)
                self._release(worker)
                raise
            with self._cond:
                self.counters.header_loads += 1
                self._import_seconds[header] = loaded.seconds
        return worker

    def _dispatch(self) -> None:
        """Hand idle workers and free capacity to waiters, best priority first (lock held).

        Only a worker about to be handed out is asked whether its REPL still runs (one ``waitpid`` per
        hand-out, not one per idle worker and dispatch); one that died while idle is replaced and the choice
        made again, so no request gets a dead REPL. The watcher replaces the others within ``WATCH_SECONDS``.
        """
        capacity_blocked = False
        for waiter in self._waiters:
            if waiter.worker is not None:
                continue
            waiter.restart_at = 0.0
            pinned = self._pinned(waiter)
            if pinned is not None and pinned.state == WorkerState.BUSY:
                continue  # wait for it while the pin holds
            if pinned is not None and self._running(pinned):
                self._hand(pinned, waiter)
                continue
            worker = self._running_idle(partial(holder, header=waiter.header))
            if worker is not None:
                self._hand(worker, waiter)
                continue
            if capacity_blocked:
                continue
            starting = sum(1 for w in self._workers if w.state == WorkerState.STARTING and w.header == waiter.header)
            wanting = sum(1 for x in self._waiters if x.worker is None and x.header == waiter.header and x < waiter)
            if starting > wanting:
                continue  # a worker for this header is on its way; it will be ours
            room = self._make_room(waiter)
            if room is None:
                capacity_blocked = True  # lower-priority waiters may not take capacity ahead of this one
                continue
            if room.state == WorkerState.IDLE:  # an idle REPL with room imports this header too
                waiter.must_import = True
            else:
                waiter.must_start = True
            room.state = WorkerState.BUSY
            room.header = waiter.header
            waiter.worker = room

    def _running(self, worker: Worker) -> bool:
        """Whether idle ``worker``'s REPL still runs; one that died while no one held it (killed from outside,
        out of memory) is replaced, so no request pays for a death it did not cause (lock held)."""
        if worker.process is None or worker.process.alive:
            return True
        log.warning("%s exited while idle; replacing it", worker.name)
        self.counters.lost += 1
        self._replace(worker)
        return False

    def _running_idle(self, choose: Callable[[list[Worker]], Worker | None]) -> Worker | None:
        """The idle worker ``choose`` picks among those not yet found dead, once its REPL is found running
        (lock held): only the pick is asked, and a dead pick is replaced before choosing again."""
        while True:
            worker = choose([w for w in self._workers if w.state == WorkerState.IDLE])
            if worker is None or self._running(worker):
                return worker

    @staticmethod
    def _hand(worker: Worker, waiter: _Waiter) -> None:
        """Give an idle worker that holds ``waiter``'s header to it (lock held)."""
        worker.state = WorkerState.BUSY
        worker.header = waiter.header
        worker.envs.move_to_end(waiter.header)
        waiter.worker = worker

    def _pinned(self, waiter: _Waiter) -> Worker | None:
        """The live worker ``waiter`` prefers and still waits for, if any (lock held)."""
        if waiter.prefer is None or time.monotonic() >= waiter.prefer_until:
            return None
        for worker in self._workers:
            if worker.id == waiter.prefer:
                alive = worker.state in (WorkerState.IDLE, WorkerState.BUSY) and waiter.header in worker.envs
                return worker if alive else None
        return None

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
        """A worker for ``waiter``'s header: an idle one of its group that imports it, or a new one (lock held).

        The order is ``repl.placement``'s: an idle REPL of the header's group imports
        it; else a new REPL starts while the pool is under ``max_repls``; else the
        least recently used idle REPL is replaced. A header import costs seconds,
        so once the pool is full this follows the ski-rental rule: while a header
        is loaded in some (busy) worker, its queued requests wait for it until
        their waiting times add up to what an import of that header costs; then
        the header takes another REPL. A header loaded nowhere takes one at once.
        """
        header = waiter.header
        group = self._groups.of(header)
        mate = self._running_idle(partial(importer, group=group))
        delay = self._restart_delay()
        idle = [w for w in self._workers if w.state == WorkerState.IDLE]
        loaded_somewhere = any(header in w.envs or w.header == header for w in self._workers)
        if mate is not None and not loaded_somewhere:
            return mate
        if len(self._workers) < self.settings.max_repls and not delay:
            return self._reserve(header, group)
        if not idle:
            if len(self._workers) < self.settings.max_repls:
                self._budget_blocks(waiter, delay)
            return None
        if loaded_somewhere and self._queue_rent(header)[0] < self.import_seconds(header):
            return None
        if mate is not None:
            return mate
        if delay:  # no start allowed now: the waiter waits for the budget
            self._budget_blocks(waiter, delay)
            return None
        replaced = victim(idle)
        assert replaced is not None  # idle is not empty
        self._workers.remove(replaced)
        self.counters.evicted += 1
        self._close_background(replaced)
        return self._reserve(header, group)

    def _reserve(self, header: str, group: int | None = None) -> Worker:
        """A new worker in the pool (lock held), on a process launched ahead when there is one; a start after
        the pool was first filled is a restart. ``group``: the header's, when the caller has it already."""
        if self._starts >= self.settings.max_repls:
            self._restarts.append(time.monotonic())
        self._starts += 1
        workdir, process = self._ahead.pop(0) if self._ahead else (_new_workdir(), None)
        worker = Worker(next(self._ids), header, workdir, self._groups.of(header) if group is None else group)
        worker.process = process
        self._workers.append(worker)
        return worker

    def _launch_ahead(self) -> None:
        """Launch one REPL process for a free slot, with no header yet (in the spawner thread)."""
        with self._cond:
            if self._closed:
                return
            workdir = _new_workdir()
        process = ReplProcess(self._launcher(workdir), name="repl-ahead")
        try:
            process.start()
        except ReplError as exc:
            log.warning("could not launch a REPL ahead of need: %s", exc)
            shutil.rmtree(workdir, ignore_errors=True)
            return
        with self._cond:
            if not self._closed and len(self._workers) + len(self._ahead) < self.settings.max_repls:
                self._ahead.append((workdir, process))
                return
        process.close(grace=0)
        shutil.rmtree(workdir, ignore_errors=True)

    def _restart_delay(self) -> float:
        """Seconds until the restart budget allows another REPL start; 0 now (lock held).

        The first ``max_repls`` starts fill the pool and are free; each later one is a restart.
        """
        limit = self.settings.max_restarts_per_minute
        if limit is None or self._starts < self.settings.max_repls:
            return 0.0
        now = time.monotonic()
        window = self.settings.restart_window_s
        while self._restarts and now - self._restarts[0] >= window:
            self._restarts.popleft()
        if len(self._restarts) < limit:
            return 0.0
        return max(0.001, self._restarts[0] + window - now)

    @staticmethod
    def _budget_blocks(waiter: _Waiter, delay: float) -> None:
        waiter.restart_at = time.monotonic() + delay
        waiter.budget_blocked = True

    def _servable_without_start(self, header: str) -> bool:
        """Whether a worker holds ``header`` or is of its group (and so may import it), so it may serve it with
        no new REPL (lock held)."""
        group = self._groups.of(header)
        return any(header in w.envs or w.header == header or w.group == group
                   for w in self._workers if w.state != WorkerState.DEAD)

    def _restart_limit_message(self, header: str, wait: float) -> str:
        limit = self.settings.max_restarts_per_minute
        delay = self._restart_delay()
        when = (f"the next is allowed in {delay:.1f} s, after this request's wait of {wait:g} s" if delay
                else f"they stayed spent for the {wait:g} s this request could wait")
        return (f"serving header {header[:80]!r} needs a new REPL, and the {limit} REPL restarts per minute "
                f"(--max-restarts-per-minute) are spent: {when}; retry later")

    def _start_worker(self, worker: Worker, limit: ImportLimit | None = None) -> None:
        """Start the REPL and import the header (outside the lock). Failure frees the slot and re-raises."""
        try:
            worker.start(self._launcher, self._spawn, limit or self._import_limit)
        except ReplError as exc:
            log.log(logging.DEBUG if self._closed else logging.WARNING, "REPL start failed for header %r: %s",
                    worker.header[:80], exc)
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
        with self._cond:
            self.counters.requests += 1
            if worker.state == WorkerState.DEAD:
                if isinstance(worker.failure, ReplTimeout):
                    self.counters.timeouts += 1
                else:
                    self.counters.lost += 1
                self._replace(worker)
            elif worker.uses >= self.settings.max_uses:
                self.counters.recycled_uses += 1
                self._replace(worker)
            elif worker.over_memory:
                self.counters.recycled_memory += 1
                self._replace(worker)
            elif worker in self._workers:
                worker.state = WorkerState.IDLE
            self._cond.notify_all()

    def _replace(self, worker: Worker) -> None:
        """Close ``worker`` and start one for its header in its place (lock held)."""
        if worker in self._workers:
            self._workers.remove(worker)
        self._close_background(worker)
        if not self._closed:
            self._spawn_background(worker.header)

    def _watch(self) -> None:
        """Once every ``WATCH_SECONDS``: replace the idle workers whose REPL died, so that their replacements
        start before anyone asks for them; with a memory limit, read each live worker's RSS and recycle an idle
        one above the limit, mark a busy one."""
        while not self._stopping.wait(WATCH_SECONDS):
            with self._cond:
                if not self._closed:
                    replaced = [w for w in self._workers if w.state == WorkerState.IDLE and not self._running(w)]
                    if replaced:
                        self._cond.notify_all()
                live = [w for w in self._workers if w.state in (WorkerState.IDLE, WorkerState.BUSY)]
            if not self.settings.mem_limit_bytes:
                continue
            for worker in live:
                worker.rss = worker.rss_bytes()
                if worker.rss <= self.settings.mem_limit_bytes:
                    continue
                worker.over_memory = True
                with self._cond:
                    if worker.state == WorkerState.IDLE and worker in self._workers and not self._closed:
                        self.counters.recycled_memory += 1
                        self._replace(worker)
                        self._cond.notify_all()

    def _spawn_background(self, header: str) -> None:
        """Start a replacement or spare in a thread (lock held).

        Skipped when the pool is full; deferred (see :meth:`_refill`) while the restart budget is spent.
        """
        if self._closed or len(self._workers) >= self.settings.max_repls:
            return
        delay = self._restart_delay()
        if delay:
            if len(self._deferred) < self.settings.max_repls:
                self._deferred.append(header)
            self.counters.restarts_deferred += 1
            log.warning("REPL restart budget (%d per minute, --max-restarts-per-minute) spent: the replacement "
                        "for header %r starts in %.1f s", self.settings.max_restarts_per_minute, header[:80], delay)
            self._arm_refill(delay)
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

    def _arm_refill(self, delay: float) -> None:
        """Run :meth:`_refill` in ``delay`` s, unless it is already due (lock held)."""
        if self._refill_timer is None and not self._closed:
            self._refill_timer = threading.Timer(delay, self._refill)
            self._refill_timer.daemon = True
            self._refill_timer.start()

    def _refill(self) -> None:
        """Start the replacements the restart budget deferred, as far as it allows now; re-arm for the rest."""
        with self._cond:
            self._refill_timer = None
            while self._deferred and not self._closed and len(self._workers) < self.settings.max_repls:
                delay = self._restart_delay()
                if delay:
                    self._arm_refill(delay)
                    break
                self._spawn_background(self._deferred.pop(0))
            else:
                self._deferred.clear()  # the pool is full (a request started what it needed) or closed
            self._cond.notify_all()

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
