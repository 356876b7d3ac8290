"""Verification across many machines on Ray: one verifier actor per node, one router on the driver.

A Lean REPL pool is node-local state (warm header imports, gigabytes each), so
the unit Ray schedules is a :class:`VerifierActor` that owns one node's pool
and verifies sub-batches of snippets on it, several at once
(``max_concurrency``). The driver-side :class:`RayVerifier` has the same
``verify(snippets, timeout=..., batch_size=..., max_workers=...)`` API as
:class:`leanstep.client.Client` and adds a streaming ``verify_iter``. It

* answers identical snippets once and fans the result out (RL batches repeat
  proofs), and keeps a small result cache across calls;
* routes by header affinity: snippets with the same header go to the actor
  whose REPLs already imported it, unless that actor is busier than the least
  loaded one by more than its pool size (then the header spreads to a second
  actor);
* balances by snippets in flight per actor (shared by every thread using the
  verifier, so an HTTP front with many request threads balances too);
* retries a sub-batch whose actor died (``RayActorError``: node lost, process
  killed) on another actor, recreating the dead one in the background, and
  returns every snippet exactly once: a verdict, or an error result when the
  retries are spent.

Ray is optional (``pip install leanstep[ray]``) and imported only when a
verifier is built.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from leanstep.config import Config

log = logging.getLogger(__name__)

RAY_MISSING = "Ray is not installed: pip install leanstep[ray]  (or: pip install 'ray>=2.30')"
# Sub-batches in flight per actor. Each holds one header, so with 2 an actor fed two interleaved
# headers often saw only one of them and ran at 0.62 of ideal; with 4 it runs at 0.98.
DEFAULT_ACTOR_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 3
MAX_AUTO_BATCH = 64
READY_TIMEOUT = 300.0
POLL_SECONDS = 0.5


def import_ray() -> Any:
    """Ray, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(RAY_MISSING) from exc
    return ray


# -- snippets, options, results (leanstep.check's types) ----------------------------------------


def _snippet_key(snippet: Any, options: Any) -> str:
    """Exact-duplicate key: the whole text and the options that change the answer."""
    raw = "\0".join((snippet.code, repr(options.infotree), repr(options.strict)))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _error_result(snippet: Any, message: str) -> Any:
    from leanstep.check.verify import ERROR, VerifyResult

    return VerifyResult(id=snippet.id, verdict=ERROR, error=message, reasons=(message,))


def _cacheable(result: Any) -> bool:
    from leanstep.check.verify import INVALID, VALID

    return result.verdict in (VALID, INVALID) and result.error is None


class _Unresponsive(RuntimeError):
    """A sub-batch outlived every limit that bounds it; its actor is presumed wedged."""


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors that mean the actor (or its node) is gone, not that the checker failed."""
    ex = ray.exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.NodeDiedError)


# -- the actor ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorStatus:
    """What one verifier actor reports: where it runs, how busy it is, which headers are warm."""

    slot: int
    node_id: str
    hostname: str
    pid: int
    max_repls: int
    in_flight_snippets: int
    in_flight_batches: int
    queue_depth: int  # requests waiting for a REPL inside the actor's pool
    workers_by_state: dict[str, int]
    warm_headers: dict[str, int]  # header text -> REPLs holding it
    verified: int  # snippets verified since the actor started
    repls_started: int  # REPL starts (each one pays its header's import)
    repls_evicted: int  # idle REPLs closed to make room for another header


class VerifierActor:
    """One node's warm pool behind a Ray actor; methods run concurrently (a threaded actor).

    Plain class so it can be tested and profiled without Ray; :func:`remote_actor_class`
    wraps it with ``ray.remote``.
    """

    def __init__(self, slot: int, config: Config, env: Mapping[str, str] | None = None) -> None:
        if env:
            os.environ.update(env)  # before the pool copies the environment for its REPLs
        from leanstep.repl.launch import make_pool

        self.slot = slot
        self.config = config
        self.pool = make_pool(config)
        self.pool.start()
        from leanstep.check.verify import Verifier

        self.verifier = Verifier(self.pool, cache_size=config.cache_size)
        self._lock = threading.Lock()
        self._in_flight_snippets = 0
        self._in_flight_batches = 0
        self._verified = 0

    def verify(self, snippets: list[Any], options: Any) -> list[Any]:
        """Verify a sub-batch (``Snippet``s, ``VerifyOptions``) on this node; results in input order."""
        with self._lock:
            self._in_flight_snippets += len(snippets)
            self._in_flight_batches += 1
        try:
            return self.verifier.verify_batch(snippets, options)
        finally:
            with self._lock:
                self._in_flight_snippets -= len(snippets)
                self._in_flight_batches -= 1
                self._verified += len(snippets)

    def status(self) -> ActorStatus:
        stats = self.pool.stats()
        with self._lock:
            in_flight, batches, verified = self._in_flight_snippets, self._in_flight_batches, self._verified
        node_id = ""
        try:
            node_id = import_ray().get_runtime_context().get_node_id()
        except Exception:  # not inside Ray
            pass
        import socket

        return ActorStatus(
            slot=self.slot, node_id=node_id, hostname=socket.gethostname(), pid=os.getpid(),
            max_repls=stats.max_repls, in_flight_snippets=in_flight, in_flight_batches=batches,
            queue_depth=stats.queue_depth, workers_by_state=dict(stats.workers_by_state),
            warm_headers=dict(stats.workers_by_header), verified=verified,
            repls_started=stats.counters.started, repls_evicted=stats.counters.evicted,
        )

    def wait_warm(self, timeout: float) -> bool:
        """Block until the pool's warm spares have imported their headers."""
        return self.pool.wait_warm(timeout)

    def repl_pids(self) -> list[int]:
        return self.pool.pids()

    def shutdown(self) -> None:
        self.verifier.close()
        self.pool.shutdown()


_REMOTE_CLASS: Any = None


def remote_actor_class() -> Any:
    """``ray.remote(VerifierActor)``, made once per process."""
    global _REMOTE_CLASS
    if _REMOTE_CLASS is None:
        _REMOTE_CLASS = import_ray().remote(VerifierActor)
    return _REMOTE_CLASS


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One actor position; the handle changes when a dead actor is recreated."""

    index: int
    node_id: str | None
    handle: Any = None
    generation: int = 0
    in_flight: int = 0  # snippets sent and not yet answered, all callers together
    failures: int = 0  # consecutive recreations without a successful answer
    disabled: bool = False
    warm: frozenset[str] = frozenset()


@dataclass
class _Chunk:
    """A sub-batch: unique snippets of one header, sent to one actor at a time."""

    header: str
    keys: list[str]
    snippets: list[Any]
    attempts: int = 0
    tried: set[int] = field(default_factory=set)


class _Pending:
    """Sub-batches waiting to be sent: lost ones first, then per header in turn.

    ``pop`` gives the least loaded actor a sub-batch of a header it already serves when there
    is one, so an idle actor takes its own headers' work instead of another actor's.
    """

    def __init__(self, queues: dict[str, deque[_Chunk]]) -> None:
        self._queues = OrderedDict((h, q) for h, q in queues.items() if q)
        self._retries: deque[_Chunk] = deque()

    def __bool__(self) -> bool:
        return bool(self._retries or self._queues)

    def retry(self, chunk: _Chunk) -> None:
        self._retries.append(chunk)

    def pop(self, owns: Callable[[str], bool], prefer: str | None = None) -> _Chunk:
        """Next sub-batch: a retry; else ``prefer``'s (the header whose sub-batch just finished:
        its REPLs are free now) when the least loaded actor serves it; else the first header in
        turn that it serves; else the first in turn."""
        if self._retries:
            return self._retries.popleft()
        if prefer is not None and prefer in self._queues and owns(prefer):
            header = prefer
        else:
            header = next((h for h in self._queues if owns(h)), next(iter(self._queues)))
        queue = self._queues[header]
        chunk = queue.popleft()
        if queue:
            self._queues.move_to_end(header)  # round-robin over headers
        else:
            del self._queues[header]
        return chunk


@dataclass(frozen=True)
class RayCounters:
    snippets: int
    unique: int
    cached: int
    sub_batches: int
    retried_sub_batches: int
    actors_recreated: int


class RayVerifier:
    """Verify snippets on a Ray cluster; drop-in for ``Client.verify`` plus a streaming ``verify_iter``.

    ``address``: a Ray address (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``) or None to use
    ``RAY_ADDRESS`` or start a local Ray. ``num_actors``: default one per alive node.
    ``config``: the pool settings each actor builds its node-local pool from (``max_repls`` is
    per actor). ``actor_env``: environment variables set in each actor before its pool starts.
    ``actor_num_cpus``: CPUs Ray reserves per actor; 0 by default because placement is explicit
    (node affinity) and the actor's real load, its REPL processes, is invisible to Ray anyway.
    ``wait_warm``: block until every actor's warm headers are imported (up to ``ready_timeout``).
    """

    def __init__(self, address: str | None = None, num_actors: int | None = None, config: Config | None = None, *,
                 actor_env: Mapping[str, str] | None = None, actor_num_cpus: float = 0,
                 actor_concurrency: int = DEFAULT_ACTOR_CONCURRENCY, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 cache_size: int | None = None, wait_warm: bool = True, init_kwargs: Mapping[str, Any] | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        ray = import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            ray.init(address=address, **kwargs)
            self._owns_ray = True
        if config is None:
            from leanstep import config as config_mod

            config = config_mod.load({})
        self.config = config
        self.actor_env = dict(actor_env or {})
        self.actor_num_cpus = actor_num_cpus
        self.actor_concurrency = max(1, actor_concurrency)
        self.max_attempts = max(1, max_attempts)
        self._lock = threading.Lock()
        self._affinity: dict[str, list[int]] = {}
        from leanstep.check.verify import ResultCache

        # whole results for exact repeats across calls: no round trip to an actor at all
        self._cache = ResultCache(config.cache_size if cache_size is None else cache_size, cacheable=_cacheable)
        self._counts = dict(snippets=0, unique=0, cached=0, sub_batches=0, retried_sub_batches=0, actors_recreated=0)
        self._verdicts: dict[str, int] = {}
        self._closed = False

        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
        if not nodes:
            raise RuntimeError("the Ray cluster has no alive node with CPUs")
        count = num_actors if num_actors is not None else len(nodes)
        if count < 1:
            raise ValueError(f"num_actors must be at least 1, got {count}")
        self._slots = [_Slot(i, nodes[i % len(nodes)]) for i in range(count)]
        for slot in self._slots:
            self._create(slot)
        self._await_ready(ready_timeout, wait_warm)

    # -- public API -------------------------------------------------------------------------------

    @property
    def num_actors(self) -> int:
        return len(self._slots)

    def verify(self, snippets: Sequence[Any], *, timeout: float | None = None, batch_size: int | None = None,
               max_workers: int | None = None, strict: bool | None = None, infotree: str | None = None,
               reuse: bool = True, progress: bool = False,
               on_batch: Callable[[list[Any]], None] | None = None) -> list[Any]:
        """``Client.verify`` on the cluster: one ``VerifyResult`` per snippet, in input order.

        Snippets: ``Snippet``, ``{"id", "code"}`` (or Kimina's ``custom_id``/``proof``), ``(id, code)``
        or a bare string (id = its index). ``timeout``: seconds per proof (default: the config's).
        ``batch_size``: most unique snippets per sub-batch sent to one actor (default: sized so
        every actor's REPLs stay busy and the tail stays short). ``max_workers``: most sub-batches
        in flight over the cluster (default: actors x actor concurrency). ``strict`` (None: the
        config's), ``infotree``, ``reuse`` (False: no cache, no de-duplication) as for the server.
        ``on_batch`` gets each group of results as it completes.
        """
        snippets = list(snippets)
        results: list[Any] = [None] * len(snippets)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(snippets), unit="proof", desc="verify", dynamic_ncols=True)
        try:
            for burst in self._bursts(snippets, self._make_options(timeout, strict, infotree, reuse),
                                      batch_size, max_workers):
                for index, result in burst:
                    results[index] = result
                if bar is not None:
                    bar.update(len(burst))
                if on_batch is not None:
                    on_batch([r for _, r in burst])
        finally:
            if bar is not None:
                bar.close()
        return results

    def verify_iter(self, snippets: Sequence[Any], *, timeout: float | None = None, batch_size: int | None = None,
                    max_workers: int | None = None, strict: bool | None = None, infotree: str | None = None,
                    reuse: bool = True) -> Iterator[tuple[int, Any]]:
        """Like :meth:`verify`, but yield ``(index, VerifyResult)`` as results arrive; each index once."""
        bursts = self._bursts(list(snippets), self._make_options(timeout, strict, infotree, reuse),
                              batch_size, max_workers)
        return (pair for burst in bursts for pair in burst)

    def verify_batch(self, snippets: Sequence[Any], options: Any = None,
                     on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """``check.verify.Verifier.verify_batch``'s contract, on the cluster (what the HTTP app calls)."""
        from leanstep.check.verify import VerifyOptions

        opts = options if options is not None else VerifyOptions(timeout=self.config.timeout,
                                                                 strict=self.config.strict)
        snippets = list(snippets)
        results: list[Any] = [None] * len(snippets)
        for burst in self._bursts(snippets, opts, None, None):
            for index, result in burst:
                results[index] = result
                if on_result is not None:
                    try:
                        on_result(index, result)
                    except Exception:  # a faulty callback must not lose results
                        log.exception("on_result callback failed for snippet %r", result.id)
        return results

    def _make_options(self, timeout: float | None, strict: bool | None, infotree: str | None, reuse: bool) -> Any:
        from leanstep.check.verify import VerifyOptions

        return VerifyOptions(timeout=float(timeout if timeout is not None else self.config.timeout),
                             infotree=infotree, strict=self.config.strict if strict is None else strict,
                             use_cache=reuse)

    def _bursts(self, snippets: list[Any], opts: Any, batch_size: int | None,
                max_workers: int | None) -> Iterator[list[tuple[int, Any]]]:
        """Groups of ``(index, result)``: cache hits first, then each sub-batch as it completes."""
        from leanstep.check.verify import as_snippet

        if self._closed:
            raise RuntimeError("this RayVerifier is closed")
        items = [as_snippet(s, i) for i, s in enumerate(snippets)]  # bad input raises here, before any work
        return self._run(items, opts, batch_size, max_workers)

    def _run(self, items: list[Any], opts: Any, batch_size: int | None,
             max_workers: int | None) -> Iterator[list[tuple[int, Any]]]:
        from leanstep.check.source import split_source

        ray = self._ray
        # De-duplicate exact repeats: the first of each key is sent, the others share its answer.
        fan_out: dict[str, list[int]] = {}
        unique: dict[str, Any] = {}
        for index, snippet in enumerate(items):
            exact = opts.use_cache and isinstance(snippet.code, str)
            key = _snippet_key(snippet, opts) if exact else f"#{index}"
            fan_out.setdefault(key, []).append(index)
            unique.setdefault(key, snippet)
        with self._lock:
            self._counts["snippets"] += len(items)
            self._counts["unique"] += len(unique)
        self._cache.note_duplicates(len(items) - len(unique))

        def emit(key: str, result: Any, cached: bool = False) -> list[tuple[int, Any]]:
            with self._lock:
                self._verdicts[result.verdict] = self._verdicts.get(result.verdict, 0) + len(fan_out[key])
            return [(index, replace(result, id=items[index].id, cached=result.cached or cached or k > 0))
                    for k, index in enumerate(fan_out[key])]

        # Answers this driver already has, without a round trip.
        burst: list[tuple[int, Any]] = []
        groups: dict[str, list[str]] = {}  # header -> snippet keys, in input order
        for key, snippet in unique.items():
            hit = self._cache.get(key, opts.timeout) if opts.use_cache else None
            if hit is not None:
                with self._lock:
                    self._counts["cached"] += len(fan_out[key])
                burst += emit(key, hit, cached=True)
                continue
            header = split_source(snippet.code).header if isinstance(snippet.code, str) else ""
            groups.setdefault(header, []).append(key)
        if burst:
            yield burst
        if not groups:
            return

        total = sum(len(keys) for keys in groups.values())
        concurrency = self.actor_concurrency
        if batch_size is None:
            busy = math.ceil(2 * max(1, self.config.max_repls) / concurrency)  # keeps an actor's REPLs busy
            spread = math.ceil(total / (len(self._slots) * concurrency))  # small batches still use every actor
            batch_size = min(MAX_AUTO_BATCH, busy, spread)
        batch_size = max(1, int(batch_size))
        max_workers = max(1, int(max_workers if max_workers is not None else len(self._slots) * concurrency))

        # Sub-batches of one header each, queued per header.
        pending = _Pending({header: deque(_Chunk(header, keys[i:i + batch_size], [unique[k] for k in keys[i:i + batch_size]])
                                          for i in range(0, len(keys), batch_size))
                            for header, keys in groups.items()})

        # A sub-batch can take at most: a wait for a REPL, an import, the proof and its axiom audit.
        overdue_after = self.config.queue_wait + self.config.import_timeout + 2 * opts.timeout + 30.0
        in_flight: dict[Any, tuple[_Chunk, _Slot, int]] = {}
        deadlines: dict[Any, float] = {}
        try:
            finished: list[str] = []  # headers of the sub-batches that just completed, latest last
            while pending or in_flight:
                burst = []
                while pending and len(in_flight) < max_workers:
                    chunk = pending.pop(self._least_loaded_owns, finished.pop() if finished else None)
                    slot = self._choose(chunk)
                    if slot is None:  # every actor is gone: answer what is left with errors
                        for key, snippet in zip(chunk.keys, chunk.snippets):
                            burst += emit(key, _error_result(snippet, "no Ray verifier actor is alive"))
                        continue
                    chunk.attempts += 1
                    chunk.tried.add(slot.index)
                    ref = slot.handle.verify.remote(chunk.snippets, opts)
                    in_flight[ref] = (chunk, slot, slot.generation)
                    deadlines[ref] = time.monotonic() + overdue_after
                    with self._lock:
                        self._counts["sub_batches"] += 1
                if in_flight:
                    ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
                else:
                    ready = []
                now = time.monotonic()
                stuck = [ref for ref in in_flight if ref not in ready and deadlines[ref] < now]
                for ref in ready + stuck:
                    chunk, slot, generation = in_flight.pop(ref)
                    del deadlines[ref]
                    with self._lock:
                        if slot.generation == generation:
                            slot.in_flight -= len(chunk.keys)
                    try:
                        if ref in stuck:  # the actor stopped answering: treat it as lost (it is killed)
                            raise _Unresponsive(f"no answer in {overdue_after:g} s")
                        results = ray.get(ref)
                    except (_Unresponsive, *_lost_errors(ray)) as exc:
                        self._lost(slot, generation, exc)
                        if chunk.attempts < self.max_attempts:
                            with self._lock:
                                self._counts["retried_sub_batches"] += 1
                            pending.retry(chunk)
                            continue
                        message = (f"the Ray verifier actor was lost {chunk.attempts} times while checking this "
                                   f"snippet ({type(exc).__name__}: {str(exc)[:500]})")
                        for key, snippet in zip(chunk.keys, chunk.snippets):
                            burst += emit(key, _error_result(snippet, message))
                        continue
                    except ray.exceptions.RayError as exc:  # the checker itself raised: answer each snippet
                        message = f"internal error on the Ray verifier actor: {str(exc)[:1000]}"
                        for key, snippet in zip(chunk.keys, chunk.snippets):
                            burst += emit(key, _error_result(snippet, message))
                        continue
                    with self._lock:
                        slot.failures = 0
                    finished.append(chunk.header)
                    for key, result in zip(chunk.keys, results):
                        if opts.use_cache:
                            self._cache.put(key, result)
                        burst += emit(key, result)
                if burst:
                    yield burst
        finally:
            # A consumer that stops early (or an error) must not leave phantom load behind.
            with self._lock:
                for chunk, slot, generation in in_flight.values():
                    if slot.generation == generation:
                        slot.in_flight -= len(chunk.keys)

    def status(self) -> list[ActorStatus | None]:
        """Each actor's report (None for an actor that did not answer), refreshing the warm-header view."""
        ray = self._ray
        refs = [(slot, slot.handle.status.remote()) for slot in self._slots if not slot.disabled]
        out: list[ActorStatus | None] = [None] * len(self._slots)
        for slot, ref in refs:
            try:
                report = ray.get(ref, timeout=30)
            except Exception as exc:  # noqa: BLE001 - any failure means "no report"
                log.warning("verifier actor %d did not report: %s", slot.index, exc)
                continue
            out[slot.index] = report
            with self._lock:
                slot.warm = frozenset(report.warm_headers)
        return out

    def cluster_health(self) -> dict[str, Any]:
        """Per-actor state for a ``/health`` answer: node, load, warm headers."""
        actors = []
        for slot, report in zip(self._slots, self.status()):
            if report is None:
                actors.append({"slot": slot.index, "alive": False})
                continue
            actors.append({"slot": slot.index, "alive": True, "node_id": report.node_id, "host": report.hostname,
                           "max_repls": report.max_repls, "in_flight": report.in_flight_snippets,
                           "queue_depth": report.queue_depth, "workers": report.workers_by_state,
                           "warm_headers": report.warm_headers, "verified": report.verified})
        return {"actors": actors, "alive": sum(1 for a in actors if a["alive"]), "counters": self.stats()["ray"]}

    def actor_handles(self) -> list[Any]:
        """The current actor handles, by slot (for tests and tooling)."""
        return [slot.handle for slot in self._slots]

    def counters(self) -> RayCounters:
        with self._lock:
            return RayCounters(**self._counts)

    @property
    def cache(self) -> Any:
        """The driver-side result cache (``stats()`` as ``ResultCache.stats()``)."""
        return self._cache

    def stats(self) -> dict[str, Any]:
        """``Verifier.stats()``'s shape (snippets, verdicts, cache) plus the cluster's counters."""
        from leanstep.check.verify import VERDICTS

        with self._lock:
            verdicts = {v: self._verdicts.get(v, 0) for v in VERDICTS}
            counts = dict(self._counts)
        return {"snippets": counts["snippets"], "verdicts": verdicts, "cache": self._cache.stats(),
                "ray": {**counts, "actors": len(self._slots),
                        "actors_alive": sum(1 for s in self._slots if not s.disabled)}}

    def close(self) -> None:
        """Shut the actors' pools down and kill the actors; stop Ray if this verifier started it."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        refs = [slot.handle.shutdown.remote() for slot in self._slots if slot.handle is not None]
        try:
            ray.get(refs, timeout=30)
        except Exception:  # noqa: BLE001 - best effort; the kill below is what counts
            pass
        for slot in self._slots:
            if slot.handle is not None:
                ray.kill(slot.handle, no_restart=True)
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- placement, routing, recovery -------------------------------------------------------------

    def _create(self, slot: _Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy: Any = "SPREAD"
        if slot.node_id is not None:
            # soft: if the node is gone, the replacement goes wherever Ray has room
            strategy = NodeAffinitySchedulingStrategy(node_id=slot.node_id, soft=True)
        options = dict(num_cpus=self.actor_num_cpus, max_concurrency=self.actor_concurrency + 2,
                       max_restarts=0, scheduling_strategy=strategy)
        slot.handle = remote_actor_class().options(**options).remote(slot.index, self._actor_config(slot),
                                                                     self.actor_env)
        slot.generation += 1
        slot.in_flight = 0
        slot.warm = frozenset()

    def _actor_config(self, slot: _Slot) -> Config:
        """The config for one actor: the configured warm headers are dealt out over the actors.

        Each actor keeps spares only for its share (every actor when there are more actors than
        headers), and the router sends each header where it is warm, so no node holds idle REPLs
        for a header that is routed elsewhere.
        """
        headers = self.config.warm_headers
        n = len(self._slots)
        if not headers or n <= 1:
            return self.config
        share = headers[slot.index::n] if len(headers) >= n else (headers[slot.index % len(headers)],)
        return self.config.with_overrides(warm_headers=tuple(share))

    def _await_ready(self, timeout: float, wait_warm: bool) -> None:
        """Fail fast, with the actor's own error, when a node cannot build its pool."""
        ray = self._ray
        method = "wait_warm" if wait_warm else "status"
        refs = [getattr(slot.handle, method).remote(*( [timeout] if wait_warm else [])) for slot in self._slots]
        try:
            ray.get(refs, timeout=timeout + 30)
        except Exception as exc:
            for slot in self._slots:
                try:
                    ray.kill(slot.handle, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
            if self._owns_ray:
                ray.shutdown()
            raise RuntimeError(f"Ray verifier actors failed to start: {exc}") from exc
        self.status()

    def _least_loaded_owns(self, header: str) -> bool:
        """Whether the least loaded actor serves ``header`` already (or nobody does yet)."""
        with self._lock:
            alive = [s for s in self._slots if not s.disabled]
            if not alive:
                return True
            least = min(alive, key=lambda s: (s.in_flight, s.index))
            owners = self._affinity.get(header)
            return least.index in owners if owners else True

    def _choose(self, chunk: _Chunk) -> _Slot | None:
        """Pick the actor for a sub-batch: header affinity while balanced, else the least loaded."""
        with self._lock:
            alive = [s for s in self._slots if not s.disabled]
            if not alive:
                return None
            fresh = [s for s in alive if s.index not in chunk.tried]
            candidates = fresh if (chunk.attempts and fresh) else alive
            least = min(candidates, key=lambda s: (s.in_flight, s.index))
            slack = max(self.config.max_repls, len(chunk.keys))
            # this driver's own routing first; a header it has not routed yet goes where it is warm
            owners = [self._slots[i] for i in self._affinity.get(chunk.header, [])]
            preferred = [s for s in (owners or [s for s in candidates if chunk.header in s.warm]) if s in candidates]
            choice = least
            if preferred:
                best = min(preferred, key=lambda s: (s.in_flight, s.index))
                if best.in_flight <= least.in_flight + slack:
                    choice = best
            owners = self._affinity.setdefault(chunk.header, [])
            if choice.index not in owners:
                owners.append(choice.index)
            choice.in_flight += len(chunk.keys)
            return choice

    def _lost(self, slot: _Slot, generation: int, exc: BaseException) -> None:
        """An actor died: recreate it once per death (several sub-batches report the same one)."""
        with self._lock:
            if slot.generation != generation or slot.disabled:
                return
            slot.failures += 1
            log.warning("verifier actor %d lost (%s: %s); recreating it", slot.index, type(exc).__name__, exc)
            old = slot.handle
            for owners in self._affinity.values():
                if slot.index in owners:
                    owners.remove(slot.index)
            if slot.failures > self.max_attempts:
                slot.disabled = True
                log.error("verifier actor %d failed %d times in a row; not recreating it", slot.index, slot.failures)
            else:
                self._create(slot)
                self._counts["actors_recreated"] += 1
        try:
            self._ray.kill(old, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


# -- CLI and server hooks ---------------------------------------------------------------------------


def sim_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The simulated REPL's cost knobs (``LEANSTEP_SIM_*``) from the driver, for the actors."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith("LEANSTEP_SIM_")}


def make_verifier(address: str | None, config: Config, num_actors: int | None = None, **kwargs: Any) -> RayVerifier:
    """The cluster verifier behind ``leanstep verify --ray`` and ``leanstep serve --ray``.

    ``address``: None or "" uses ``RAY_ADDRESS`` or starts a local Ray; "auto" joins the cluster
    this node belongs to (``ray start``); else a Ray address (``HEAD:6379``, ``ray://HEAD:10001``).
    The driver's ``LEANSTEP_SIM_*`` variables go to the actors (simulated costs for dry runs).
    Raises :class:`leanstep.repl.launch.SetupError` with the reason when Ray is missing or a
    node cannot start its pool.
    """
    from leanstep.repl.launch import SetupError

    kwargs.setdefault("actor_env", sim_environ())
    try:
        return RayVerifier(address=address or None, num_actors=num_actors, config=config, **kwargs)
    except ImportError as exc:
        raise SetupError(str(exc)) from None
    except (RuntimeError, ConnectionError) as exc:
        raise SetupError(f"cannot use the Ray cluster: {exc}") from None


def add_verify_arguments(parser: Any) -> None:
    """``--ray [ADDRESS]`` and ``--ray-actors N`` for ``leanstep verify`` (imports nothing from Ray)."""
    group = parser.add_argument_group("Ray cluster (instead of --url or a local pool)")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="verify on a Ray cluster: one warm pool per node (--max-repls REPLs each); "
                            "ADDRESS as for `ray.init` ('auto': the cluster this node joined); "
                            "without ADDRESS: $RAY_ADDRESS or a local Ray")
    group.add_argument("--ray-actors", type=int, default=None, metavar="N",
                       help="verifier actors (default: one per node)")


def run_verify(args: Any, snippets: Sequence[Any], on_result: Callable[[int, Any], None]) -> None:
    """``leanstep verify --ray``: ``on_result(index, result)`` for every snippet, as results arrive.

    Uses the same pool flags as the local path (``--repl``, ``--workspace``, ``--max-repls``,
    ``--sandbox``, ``--import-timeout``); each node builds its pool from them.
    """
    from leanstep import config as config_mod

    settings = {k: getattr(args, k) for k in ("repl", "workspace", "max_repls", "sandbox", "import_timeout")
                if getattr(args, k, None) is not None}
    config = config_mod.load(settings)
    verifier = make_verifier(args.ray, config, num_actors=getattr(args, "ray_actors", None))
    try:
        for index, result in verifier.verify_iter(
                snippets, timeout=args.timeout, strict=args.strict, infotree=args.infotree,
                reuse=not args.no_cache):
            on_result(index, result)
    finally:
        verifier.close()


def make_app_verifier(config: Config, address: str | None = None, num_actors: int | None = None) -> RayVerifier:
    """For ``leanstep serve --ray``: an object with the ``Verifier`` interface ``server/app.py`` uses
    (``verify_batch(snippets, options, on_result)``, ``stats()``, ``cache.stats()``, ``close()``)
    whose batches fan out over the cluster; ``cluster_health()`` adds per-actor state for ``/health``.
    """
    return make_verifier(address, config, num_actors=num_actors)
