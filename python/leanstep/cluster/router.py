"""The driver side of the Ray scale-out: :class:`RayVerifier` routes batches over the verifier actors.

It is a :class:`leanstep.check.verify.BatchVerifier` (what ``leanstep serve --ray``
answers ``/verify`` with), has the same ``verify(snippets, timeout=..., batch_size=...,
max_workers=...)`` call as :class:`leanstep.client.Client`, and adds a streaming
``verify_iter``. It

* answers identical snippets once and keeps a result cache across calls, for the whole
  cluster (its :class:`~leanstep.check.verify.Deduplicator`; the actors do neither);
* routes by header affinity: snippets with the same header go to the actor whose REPLs
  already imported it, unless that actor is busier than the least loaded one by more
  than its pool size (then the header spreads to a second actor);
* balances by snippets in flight per actor (shared by every thread using the verifier,
  so an HTTP front with many request threads balances too);
* retries a sub-batch whose actor died (``RayActorError``: node lost, process killed) on
  another actor, recreating the dead one in the background, and answers every snippet
  exactly once: a verdict, or an error result when the retries are spent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import leanstep.check.verdict as codes
from leanstep.api.records import snippet_of
from leanstep.check.verdict import Trust
from leanstep.check.verify import (
    BatchPlan,
    CheckRecord,
    Deduplicator,
    Outcome,
    PendingCheck,
    ResultCache,
    ResultCallback,
    SnippetLike,
    VerifierStats,
    VerifyOptions,
    VerifyResult,
)
from leanstep.cluster.actor import ActorStatus, import_ray, remote_actor_class
from leanstep.config import Config
from leanstep.progress import Progress

log = logging.getLogger(__name__)

# Sub-batches in flight per actor. Each holds one header, so with 2 an actor fed two interleaved
# headers often saw only one of them and ran at 0.62 of ideal; with 4 it runs at 0.98.
DEFAULT_ACTOR_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 3
MAX_AUTO_BATCH = 64
READY_TIMEOUT = 300.0
POLL_SECONDS = 0.5

Burst = list[tuple[int, VerifyResult]]  # (input index, result) pairs answered together


class _Unresponsive(RuntimeError):
    """A sub-batch outlived every limit that bounds it; its actor is presumed wedged."""


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors that mean the actor (or its node) is gone, not that the checker failed."""
    ex = ray.exceptions
    return (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.NodeDiedError)


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
    """A sub-batch: distinct snippets of one header, sent to one actor at a time."""

    header: str
    checks: list[PendingCheck]
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
    """The router's own work (the de-duplication and cache counters are in ``stats()``)."""

    sub_batches: int
    retried_sub_batches: int
    actors_recreated: int


@dataclass(frozen=True)
class RayTarget:
    """Which Ray cluster to verify on: ``address`` as for ``ray.init`` (None or "": ``$RAY_ADDRESS`` or a
    local Ray; "auto": the cluster this node joined), and ``num_actors`` (None: one per alive node)."""

    address: str | None = None
    num_actors: int | None = None


class RayVerifier:
    """Verify snippets on a Ray cluster: a ``BatchVerifier``, ``Client.verify``'s call, and ``verify_iter``.

    ``address``: a Ray address (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``) or None to use
    ``RAY_ADDRESS`` or start a local Ray. ``num_actors``: default one per alive node.
    ``config``: the pool settings each actor builds its node-local pool from (``max_repls`` is
    per actor). ``actor_env``: environment variables set in each actor before its pool starts.
    ``actor_num_cpus``: CPUs Ray reserves per actor; 0 by default because placement is explicit
    (node affinity) and the actor's real load, its REPL processes, is invisible to Ray anyway.
    ``cache_size``: results the driver keeps (default: the config's). ``wait_warm``: block until
    every actor's warm headers are imported (up to ``ready_timeout``).
    """

    def __init__(self, address: str | None = None, num_actors: int | None = None, config: Config | None = None, *,
                 actor_env: Mapping[str, str] | None = None, actor_num_cpus: float = 0,
                 actor_concurrency: int = DEFAULT_ACTOR_CONCURRENCY, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 cache_size: int | None = None, wait_warm: bool = True, init_kwargs: Mapping[str, Any] | None = None,
                 ready_timeout: float = READY_TIMEOUT, on_check: Callable[[CheckRecord], None] | None = None) -> None:
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
        # whole-cluster repeats are answered here, with no round trip to an actor at all
        self._dedup = Deduplicator(ResultCache(config.cache_size if cache_size is None else cache_size), on_check)
        self._counts = {"sub_batches": 0, "retried_sub_batches": 0, "actors_recreated": 0}
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

    def verify(self, snippets: Sequence[SnippetLike], *, timeout: float | None = None, batch_size: int | None = None,
               max_workers: int | None = None, trust: Trust | None = None, infotree: str | None = None,
               reuse: bool = True, progress: bool = False,
               on_batch: Callable[[list[VerifyResult]], None] | None = None) -> list[VerifyResult]:
        """``Client.verify`` on the cluster: one ``VerifyResult`` per snippet, in input order.

        Snippets: ``Snippet``, ``{"id", "code"}`` (or Kimina's ``custom_id``/``proof``), ``(id, code)``
        or a bare string (id = its index). ``timeout``: seconds per proof (default: the config's).
        ``batch_size``: most distinct snippets per sub-batch sent to one actor (default: sized so
        every actor's REPLs stay busy and the tail stays short). ``max_workers``: most sub-batches
        in flight over the cluster (default: actors x actor concurrency). ``trust`` (None: the
        config's), ``infotree``, ``reuse`` (False: no cache, no de-duplication) as for the server.
        ``on_batch`` gets each group of results as it completes.
        """
        plan = self._plan(snippets, self._make_options(timeout, trust, infotree, reuse))
        with Progress(len(snippets), "proof", "verify", enabled=progress) as bar:
            for burst in self._run(plan, batch_size, max_workers):
                bar.update(len(burst))
                if on_batch is not None:
                    on_batch([r for _, r in burst])
        return plan.results()

    def verify_iter(self, snippets: Sequence[SnippetLike], *, timeout: float | None = None,
                    batch_size: int | None = None, max_workers: int | None = None, trust: Trust | None = None,
                    infotree: str | None = None, reuse: bool = True) -> Iterator[tuple[int, VerifyResult]]:
        """Like :meth:`verify`, but yield ``(index, VerifyResult)`` as results arrive; each index once."""
        plan = self._plan(snippets, self._make_options(timeout, trust, infotree, reuse))
        return (pair for burst in self._run(plan, batch_size, max_workers) for pair in burst)

    def verify_batch(self, snippets: Sequence[SnippetLike], options: VerifyOptions,
                     on_result: ResultCallback | None = None) -> list[VerifyResult]:
        """The ``BatchVerifier`` call, on the cluster (what the HTTP app makes)."""
        plan = self._plan(snippets, options, on_result)
        for _ in self._run(plan, None, None):
            pass
        return plan.results()

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

    def actor_handles(self) -> list[Any]:
        """The current actor handles, by slot (for tests and tooling)."""
        return [slot.handle for slot in self._slots]

    def counters(self) -> RayCounters:
        with self._lock:
            return RayCounters(**self._counts)

    def stats(self) -> VerifierStats:
        """Snippets and verdicts answered, and the driver's result cache (the ``BatchVerifier`` call)."""
        return self._dedup.stats()

    def close(self) -> None:
        """Shut the actors' pools down and kill the actors; stop Ray if this verifier started it."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        refs = [slot.handle.shutdown.remote() for slot in self._slots if slot.handle is not None]
        with contextlib.suppress(Exception):  # best effort; the kill below is what counts
            ray.get(refs, timeout=30)
        for slot in self._slots:
            if slot.handle is not None:
                ray.kill(slot.handle, no_restart=True)
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batches ----------------------------------------------------------------------------------

    def _make_options(self, timeout: float | None, trust: Trust | None, infotree: str | None,
                      reuse: bool) -> VerifyOptions:
        return VerifyOptions(timeout=float(timeout if timeout is not None else self.config.timeout),
                             infotree=infotree, trust=self.config.trust if trust is None else trust,
                             use_cache=reuse)

    def _plan(self, snippets: Sequence[SnippetLike], options: VerifyOptions,
              on_result: ResultCallback | None = None) -> BatchPlan:
        """The batch against the driver's cache; bad input raises here, before any work."""
        if self._closed:
            raise RuntimeError("this RayVerifier is closed")
        return self._dedup.plan([snippet_of(s, i) for i, s in enumerate(snippets)], options, on_result)

    def _run(self, plan: BatchPlan, batch_size: int | None, max_workers: int | None) -> Iterator[Burst]:
        """Bursts of answers: what the cache answered first, then each sub-batch as it completes."""
        ray = self._ray
        opts = plan.options
        if plan.answered:
            yield list(plan.answered)
        groups: dict[str, list[PendingCheck]] = {}  # header -> its distinct snippets, in input order
        for check in plan.checks:
            groups.setdefault(check.split.header, []).append(check)
        if not groups:
            return

        total = len(plan.checks)
        concurrency = self.actor_concurrency
        if batch_size is None:
            busy = math.ceil(2 * max(1, self.config.max_repls) / concurrency)  # keeps an actor's REPLs busy
            spread = math.ceil(total / (len(self._slots) * concurrency))  # small batches still use every actor
            batch_size = min(MAX_AUTO_BATCH, busy, spread)
        batch_size = max(1, int(batch_size))
        max_workers = max(1, int(max_workers if max_workers is not None else len(self._slots) * concurrency))

        # Sub-batches of one header each, queued per header.
        pending = _Pending({header: deque(_Chunk(header, checks[i:i + batch_size])
                                          for i in range(0, len(checks), batch_size))
                            for header, checks in groups.items()})

        # A sub-batch can take at most: a wait for a REPL, an import, the proof and its axiom audit.
        overdue_after = self.config.queue_wait + self.config.import_timeout + 2 * opts.timeout + 30.0
        in_flight: dict[Any, tuple[_Chunk, _Slot, int]] = {}
        deadlines: dict[Any, float] = {}
        lost: tuple[type[BaseException], ...] = (_Unresponsive, *_lost_errors(ray))
        try:
            finished: list[str] = []  # headers of the sub-batches that just completed, latest last
            while pending or in_flight:
                burst: Burst = []
                while pending and len(in_flight) < max_workers:
                    chunk = pending.pop(self._least_loaded_owns, finished.pop() if finished else None)
                    burst += self._drop_skipped(plan, chunk)
                    if not chunk.checks:
                        continue
                    slot = self._choose(chunk)
                    if slot is None:  # every actor is gone: answer what is left with errors
                        for check in chunk.checks:
                            burst += plan.fail(check, codes.CLUSTER_LOST, "no Ray verifier actor is alive")
                        continue
                    chunk.attempts += 1
                    chunk.tried.add(slot.index)
                    ref = slot.handle.check.remote([c.submission for c in chunk.checks], opts.within_deadline())
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
                            slot.in_flight -= len(chunk.checks)
                    try:
                        if ref in stuck:  # the actor stopped answering: treat it as lost (it is killed)
                            raise _Unresponsive(f"no answer in {overdue_after:g} s")
                        outcomes: list[Outcome] = ray.get(ref)
                    except lost as exc:
                        self._lost(slot, generation, exc)
                        if chunk.attempts < self.max_attempts:
                            with self._lock:
                                self._counts["retried_sub_batches"] += 1
                            pending.retry(chunk)
                            continue
                        message = (f"the Ray verifier actor was lost {chunk.attempts} times while checking this "
                                   f"snippet ({type(exc).__name__}: {str(exc)[:500]})")
                        for check in chunk.checks:
                            burst += plan.fail(check, codes.CLUSTER_LOST, message)
                        continue
                    except ray.exceptions.RayError as exc:  # the checker itself raised: answer each snippet
                        message = f"internal error on the Ray verifier actor: {str(exc)[:1000]}"
                        for check in chunk.checks:
                            burst += plan.fail(check, codes.INTERNAL_ERROR, message)
                        continue
                    with self._lock:
                        slot.failures = 0
                    finished.append(chunk.header)
                    for check, outcome in zip(chunk.checks, outcomes, strict=True):
                        burst += plan.resolve(check, outcome)
                if burst:
                    yield burst
        finally:
            # A consumer that stops early (or an error) must not leave phantom load behind.
            with self._lock:
                for chunk, slot, generation in in_flight.values():
                    if slot.generation == generation:
                        slot.in_flight -= len(chunk.checks)

    @staticmethod
    def _drop_skipped(plan: BatchPlan, chunk: _Chunk) -> Burst:
        """Answer the checks of ``chunk`` that are skipped (an earlier sibling was valid meanwhile, or the
        batch's deadline is there) and keep the rest in it; the answers are returned."""
        burst: Burst = []
        kept = []
        for check in chunk.checks:
            skipped = plan.skipped(check)
            if skipped is None:
                kept.append(check)
            else:
                burst += plan.resolve(check, skipped)
        chunk.checks = kept
        return burst

    # -- placement, routing, recovery -------------------------------------------------------------

    def _create(self, slot: _Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy: Any = "SPREAD"
        if slot.node_id is not None:
            # soft: if the node is gone, the replacement goes wherever Ray has room
            strategy = NodeAffinitySchedulingStrategy(node_id=slot.node_id, soft=True)
        options = {"num_cpus": self.actor_num_cpus, "max_concurrency": self.actor_concurrency + 2,
                   "max_restarts": 0, "scheduling_strategy": strategy}
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
        if wait_warm:
            refs = [slot.handle.wait_warm.remote(timeout) for slot in self._slots]
        else:
            refs = [slot.handle.status.remote() for slot in self._slots]
        try:
            ray.get(refs, timeout=timeout + 30)
        except Exception as exc:
            for slot in self._slots:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(slot.handle, no_restart=True)
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
            slack = max(self.config.max_repls, len(chunk.checks))
            # this driver's own routing first; a header it has not routed yet goes where it is warm
            routed = [self._slots[i] for i in self._affinity.get(chunk.header, [])]
            preferred = [s for s in (routed or [s for s in candidates if chunk.header in s.warm]) if s in candidates]
            choice = least
            if preferred:
                best = min(preferred, key=lambda s: (s.in_flight, s.index))
                if best.in_flight <= least.in_flight + slack:
                    choice = best
            owners = self._affinity.setdefault(chunk.header, [])
            if choice.index not in owners:
                owners.append(choice.index)
            choice.in_flight += len(chunk.checks)
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
        with contextlib.suppress(Exception):  # already gone
            self._ray.kill(old, no_restart=True)


def sim_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The simulated REPL's cost knobs (``LEANSTEP_SIM_*``) from the driver, for the actors."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith("LEANSTEP_SIM_")}


def make_verifier(target: RayTarget, config: Config,
                  on_check: Callable[[CheckRecord], None] | None = None) -> RayVerifier:
    """The cluster verifier behind ``leanstep verify --ray`` and ``leanstep serve --ray``.

    The driver's ``LEANSTEP_SIM_*`` variables go to the actors (simulated costs for dry runs).
    Raises :class:`leanstep.repl.launch.SetupError` with the reason when Ray is missing or a
    node cannot start its pool.
    """
    from leanstep.repl.launch import SetupError

    try:
        return RayVerifier(address=target.address or None, num_actors=target.num_actors, config=config,
                           actor_env=sim_environ(), on_check=on_check)
    except ImportError as exc:
        raise SetupError(str(exc)) from None
    except (RuntimeError, ConnectionError) as exc:
        raise SetupError(f"cannot use the Ray cluster: {exc}") from None
